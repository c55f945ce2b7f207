import { describe, expect, it } from 'vitest';
import { AdminAuth } from './admin-auth';

const TOKEN = 'a-token-of-at-least-16-chars';

describe('AdminAuth', () => {
  it('accepts exactly the configured bearer token', () => {
    const auth = new AdminAuth(TOKEN);
    expect(auth.open).toBe(false);
    expect(auth.check(`Bearer ${TOKEN}`)).toEqual({ ok: true });
    expect(auth.check(`bearer  ${TOKEN} `)).toEqual({ ok: true });
  });

  it('refuses a missing, malformed, wrong, prefixed or longer token with a reason', () => {
    const auth = new AdminAuth(TOKEN);
    expect(auth.check(undefined)).toMatchObject({ ok: false, reason: expect.stringMatching(/missing/) });
    expect(auth.check('')).toMatchObject({ ok: false });
    expect(auth.check(TOKEN)).toMatchObject({ ok: false, reason: expect.stringMatching(/Bearer/) });
    expect(auth.check(`Basic ${TOKEN}`)).toMatchObject({ ok: false });
    expect(auth.check('Bearer wrong-token-wrong-token')).toMatchObject({
      ok: false,
      reason: 'wrong admin token',
    });
    expect(auth.check(`Bearer ${TOKEN.slice(0, -1)}`)).toMatchObject({ ok: false });
    expect(auth.check(`Bearer ${TOKEN}x`)).toMatchObject({ ok: false });
    expect(auth.check(`Bearer ${TOKEN} extra`)).toMatchObject({ ok: false });
    expect(auth.check([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`])).toMatchObject({ ok: false });
  });

  it('lets everything through when no token is configured', () => {
    const auth = new AdminAuth(undefined);
    expect(auth.open).toBe(true);
    expect(auth.check(undefined)).toEqual({ ok: true });
  });
});
