import { createReadStream, promises as fsp } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The demo cell's origin: a local HTTP server that serves image files the way the conductor's origin
 * client expects (GET /images/<imageId>/file, Content-Length, X-Checksum-Sha256; the conductor's
 * ORIGIN_URL points here). It counts GETs, so the demo can show that a fan-out downloaded each image once.
 */
export class DemoOrigin {
  readonly gets = new Map<string, number>();
  private readonly files = new Map<string, { path: string; sha256: string }>();

  private constructor(private readonly server: Server) {}

  static async start(): Promise<DemoOrigin> {
    const origin: DemoOrigin = new DemoOrigin(
      createServer((req, res) => {
        const match = /^\/images\/([^/]+)\/file$/.exec(req.url ?? '');
        const imageId = match ? decodeURIComponent(match[1]!) : '';
        const file = origin.files.get(imageId);
        if (!file || req.method !== 'GET') return void res.writeHead(404).end();
        origin.gets.set(imageId, (origin.gets.get(imageId) ?? 0) + 1);
        fsp.stat(file.path).then(
          (stat) => {
            res.writeHead(200, { 'content-length': String(stat.size), 'x-checksum-sha256': file.sha256 });
            createReadStream(file.path).pipe(res);
          },
          () => res.writeHead(500).end(),
        );
      }),
    );
    await new Promise<void>((resolve) => origin.server.listen(0, '127.0.0.1', resolve));
    return origin;
  }

  get urlTemplate(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/images/{imageId}/file`;
  }

  serve(imageId: string, path: string, sha256: string): void {
    this.files.set(imageId, { path, sha256 });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
