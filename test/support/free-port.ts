import { createServer } from 'node:net';

/**
 * A TCP port free on 127.0.0.1 right now (closed again before it is returned: another process may take
 * it first). Its own module, without vitest, so that bench runners can load what uses it.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
