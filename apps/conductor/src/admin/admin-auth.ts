import { createHash, timingSafeEqual } from 'node:crypto';

export type AuthVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Checks `Authorization: Bearer <ADMIN_TOKEN>`. Both sides are hashed first, so the constant-time
 * comparison always compares two 32-byte digests and leaks neither the token nor its length.
 * Without a configured token every request is let through: main.ts then binds to 127.0.0.1 only.
 */
export class AdminAuth {
  private readonly expected?: Buffer;

  constructor(token: string | undefined) {
    if (token) this.expected = digest(token);
  }

  /** True when no token is configured (routes open on loopback). */
  get open(): boolean {
    return this.expected === undefined;
  }

  check(authorization: string | string[] | undefined): AuthVerdict {
    if (!this.expected) return { ok: true };
    if (authorization === undefined || authorization === '')
      return { ok: false, reason: 'missing Authorization: Bearer <ADMIN_TOKEN> header' };
    if (Array.isArray(authorization)) return { ok: false, reason: 'more than one Authorization header' };
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (!match) return { ok: false, reason: 'the Authorization header must be "Bearer <ADMIN_TOKEN>"' };
    if (!timingSafeEqual(digest(match[1]!), this.expected)) return { ok: false, reason: 'wrong admin token' };
    return { ok: true };
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
