import { createHash, randomBytes } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { OriginClient } from './origin-client';

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

const BODY = randomBytes(200_000);
const SHA = createHash('sha256').update(BODY).digest('hex');

describe('OriginClient (against a real local HTTP server)', () => {
  let server: Server;
  let handler: Handler;
  let requests: IncomingMessage[];
  let client: OriginClient;

  beforeEach(async () => {
    requests = [];
    server = createServer((req, res) => {
      requests.push(req);
      handler(req, res, requests.length);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    client = new OriginClient({
      urlTemplate: `http://127.0.0.1:${port}/v2/images/{imageId}/file`,
      authHeader: { name: 'X-Auth-Token', value: 'tok' },
      checksumHeader: 'X-Checksum-Sha256',
      attempts: 3,
      idleTimeoutMs: 1_000,
      retryDelayMs: () => 10,
    });
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const readAll = async (imageId = 'img') => {
    const download = await client.open(imageId);
    const parts: Buffer[] = [];
    for await (const chunk of download.chunks) parts.push(Buffer.from(chunk));
    return { download, body: Buffer.concat(parts) };
  };
  const failure = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ReasonError);
    return error as ReasonError;
  };
  /** Sends `from`.. of BODY; drops the connection after `dropAfter` bytes when given. */
  const send = (res: ServerResponse, from: number, status: number, dropAfter?: number) => {
    const body = BODY.subarray(from);
    res.writeHead(status, {
      'content-length': String(body.length),
      'x-checksum-sha256': SHA,
      ...(status === 206 ? { 'content-range': `bytes ${from}-${BODY.length - 1}/${BODY.length}` } : {}),
    });
    if (dropAfter === undefined) return void res.end(body);
    res.write(body.subarray(0, dropAfter), () => setTimeout(() => res.destroy(), 20));
  };

  it('sends the auth header, reads size and checksum, and encodes the image id into the URL', async () => {
    handler = (_req, res) => send(res, 0, 200);
    const { download, body } = await readAll('a b.img');
    expect(body.equals(BODY)).toBe(true);
    expect(download).toMatchObject({ size: BODY.length, sha256: SHA });
    expect(requests[0]!.url).toBe('/v2/images/a%20b.img/file');
    expect(requests[0]!.headers['x-auth-token']).toBe('tok');
    expect(client.describe()).toEqual({
      urlTemplate: expect.stringContaining('{imageId}'),
      authHeader: 'X-Auth-Token: [redacted]',
      checksumHeader: 'X-Checksum-Sha256',
    });
  });

  it('reads past the bytes it has when a resume is answered 200 (the server ignores Range)', async () => {
    handler = (_req, res, n) => send(res, 0, 200, n === 1 ? 70_000 : undefined);
    const { body } = await readAll();
    expect(body.equals(BODY)).toBe(true);
    expect(requests[1]!.headers.range).toMatch(/^bytes=\d+-$/);
  });

  it('stops when the image changed at the origin between two connections (another ETag)', async () => {
    handler = (_req, res, n) => {
      res.setHeader('etag', n === 1 ? '"v1"' : '"v2"');
      send(res, 0, 200, n === 1 ? 70_000 : undefined);
    };
    const error = await failure(readAll());
    expect(error).toMatchObject({ code: 'ORIGIN_UNAVAILABLE', retryable: true });
    expect(error.message).toContain(
      'the image changed at the origin during the download (ETag "v1", now "v2")',
    );
    expect(requests[1]!.headers['if-range']).toBe('"v1"');
  });

  it('refuses a resume answered with another range', async () => {
    handler = (_req, res, n) => {
      if (n === 1) return send(res, 0, 200, 70_000);
      res.writeHead(206, { 'content-range': `bytes 0-9/${BODY.length}` }).end(BODY.subarray(0, 10));
    };
    const error = await failure(readAll());
    expect(error.code).toBe('ORIGIN_BAD_RESPONSE');
    expect(error.message).toMatch(
      /a resume from byte \d+ was answered with Content-Range "bytes 0-9\/200000"/,
    );
  });

  it('gives up with a retryable ORIGIN_UNAVAILABLE when every connection drops', async () => {
    handler = (_req, res) => send(res, 0, 200, 1_000);
    const error = await failure(readAll());
    expect(error).toMatchObject({ code: 'ORIGIN_UNAVAILABLE', retryable: true });
    expect(requests).toHaveLength(3);
  });

  it('retries a 503 and then reads the body', async () => {
    handler = (_req, res, n) => (n === 1 ? void res.writeHead(503).end() : send(res, 0, 200));
    expect((await readAll()).body.equals(BODY)).toBe(true);
  });

  it('treats a stalled connection as dropped and resumes it', async () => {
    handler = (_req, res, n) => {
      if (n > 1) return send(res, Number(/\d+/.exec(_req.headers.range ?? '0')![0]), 206);
      res.writeHead(200, { 'content-length': String(BODY.length), 'x-checksum-sha256': SHA });
      res.write(BODY.subarray(0, 50_000)); // and then nothing
    };
    const { body } = await readAll();
    expect(body.equals(BODY)).toBe(true);
  });

  it.each([
    [
      'a malformed checksum header',
      { 'x-checksum-sha256': 'zz' },
      /header X-Checksum-Sha256 must be a sha256/,
    ],
    [
      'a checksum header one digit short',
      { 'x-checksum-sha256': SHA.slice(1) },
      /must be a sha256 \(64 hex digits\), got "[0-9a-f]{63}"/,
    ],
  ])('refuses %s before reading the body', async (_what, headers, message) => {
    handler = (_req, res) => {
      const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
      res.socket!.end(`HTTP/1.1 200 OK\r\n${lines.join('\r\n')}\r\nconnection: close\r\n\r\n`);
    };
    const error = await failure(client.open('img'));
    expect(error.code).toBe('ORIGIN_BAD_RESPONSE');
    expect(error.message).toMatch(message);
  });

  it.each([
    [404, 'ORIGIN_NOT_FOUND'],
    [401, 'ORIGIN_UNAUTHORIZED'],
    [403, 'ORIGIN_UNAUTHORIZED'],
    [418, 'ORIGIN_BAD_RESPONSE'],
  ])('answers %i with %s, without retrying', async (status, code) => {
    handler = (_req, res) => void res.writeHead(status).end();
    expect((await failure(client.open('img'))).code).toBe(code);
    expect(requests).toHaveLength(1);
  });
});
