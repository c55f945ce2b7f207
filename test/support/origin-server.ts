import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the test origin serves one image. */
export interface OriginImage {
  body: Buffer;
  /** The checksum header's value: the body's sha256 by default; a string sends that (a lie, or garbage). */
  checksum?: string | null;
  /** A status instead of the body (404, 401, 503...). */
  status?: number;
  /** Drop the connection after this many body bytes, on the first `dropTimes` GETs (default 1). */
  dropAfter?: number;
  dropTimes?: number;
  /** Send the body in pieces of this size with a pause between them (a slow origin). */
  slowChunk?: number;
  slowPauseMs?: number;
}

export const ORIGIN_TOKEN = 'origin-secret-token-4f1c9a';

/**
 * The test's own origin: GET /images/<id>/file with `X-Auth-Token`, `X-Checksum-Sha256`, Range support
 * (206 with Content-Range), and faults per image. It records every request it answered.
 */
export class OriginServer {
  readonly requests: Array<{ imageId: string; range?: string; token?: string }> = [];
  private readonly images = new Map<string, OriginImage>();
  private readonly server: Server;
  private served = new Map<string, number>();

  private constructor() {
    this.server = createServer((req, res) => this.answer(req, res));
  }

  static async start(): Promise<OriginServer> {
    const origin = new OriginServer();
    await new Promise<void>((resolve) => origin.server.listen(0, '127.0.0.1', resolve));
    return origin;
  }

  get urlTemplate(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/images/{imageId}/file`;
  }

  add(imageId: string, image: OriginImage): { sha256: string; size: number } {
    this.images.set(imageId, image);
    return { sha256: createHash('sha256').update(image.body).digest('hex'), size: image.body.length };
  }

  /** GETs of one image, and those that were whole-body (no Range). */
  gets(imageId: string): { all: number; fromStart: number } {
    const mine = this.requests.filter((r) => r.imageId === imageId);
    return { all: mine.length, fromStart: mine.filter((r) => r.range === undefined).length };
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const match = /^\/images\/([^/]+)\/file$/.exec(req.url ?? '');
    const imageId = match ? decodeURIComponent(match[1]!) : '';
    const range = req.headers.range;
    const token = req.headers['x-auth-token'] as string | undefined;
    this.requests.push({ imageId, range, token });
    const image = this.images.get(imageId);
    if (token !== ORIGIN_TOKEN) return void res.writeHead(401).end('no');
    if (!image) return void res.writeHead(404).end('unknown image');
    if (image.status) return void res.writeHead(image.status).end('fault');
    const sha256 = createHash('sha256').update(image.body).digest('hex');
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      etag: `"${sha256}"`,
    };
    if (image.checksum !== null) headers['x-checksum-sha256'] = image.checksum ?? sha256;
    let start = 0;
    const ranged = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (ranged) {
      start = Number(ranged[1]);
      headers['content-range'] = `bytes ${start}-${image.body.length - 1}/${image.body.length}`;
    }
    const body = image.body.subarray(start);
    headers['content-length'] = String(body.length);
    res.writeHead(ranged ? 206 : 200, headers);
    const served = this.served.get(imageId) ?? 0;
    this.served.set(imageId, served + 1);
    if (image.dropAfter !== undefined && served < (image.dropTimes ?? 1)) {
      res.write(body.subarray(0, image.dropAfter), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    if (image.slowChunk) return void this.trickle(res, body, image.slowChunk, image.slowPauseMs ?? 20);
    res.end(body);
  }

  private trickle(res: ServerResponse, body: Buffer, size: number, pauseMs: number): void {
    let offset = 0;
    const next = () => {
      if (res.destroyed) return;
      if (offset >= body.length) return void res.end();
      const piece = body.subarray(offset, offset + size);
      offset += piece.length;
      res.write(piece, () => setTimeout(next, pauseMs));
    };
    next();
  }
}
