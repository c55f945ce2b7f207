import { describe, expect, it } from 'vitest';
import type { ConductorConfig } from './config/conductor-config';
import { loadConductorConfig } from './config/load-conductor-config';
import { conductorOptions } from './conductor-options';

/** A valid environment with every optional part on, so that each setting has a part to reach. */
const base = {
  CELL_ID: 'cell-1',
  CACHE_ROOT: '/srv/cache',
  CONDUCTOR_ID: 'conductor-a',
  HASH_WORKERS: '2',
  ORIGIN_URL: 'https://origin.example/images/{imageId}',
};

/**
 * For every setting: another valid value (which must change what some part is told), or why no part of
 * the composition reads it. A Record of every key: a setting added to the table without a line here
 * does not compile.
 */
const OTHER_VALUE: Record<keyof ConductorConfig, string | { readBy: string }> = {
  CELL_ID: 'cell-2',
  CACHE_ROOT: '/srv/other',
  AMQP_URL: 'amqp://guest:guest@127.0.0.1:5673',
  AMQP_TLS_CA_FILE: { readBy: 'main.ts (loadBrokerTls: the broker login)' },
  AMQP_TLS_CERT_FILE: { readBy: 'main.ts (loadBrokerTls: the broker login)' },
  AMQP_TLS_KEY_FILE: { readBy: 'main.ts (loadBrokerTls: the broker login)' },
  AMQP_TLS_SERVERNAME: { readBy: 'main.ts (loadBrokerTls: the broker login)' },
  AMQP_AUTH_MECHANISM: { readBy: 'main.ts (loadBrokerTls: the broker login)' },
  CONDUCTOR_ID: 'conductor-b',
  COPY_CONCURRENCY: '8',
  HASH_WORKERS: '0',
  LOCK_WAIT_MS: '5000',
  LOCK_STALE_MS: '30000',
  LOCK_UPDATE_MS: '3000',
  LOCK_SAFETY_MARGIN_MS: '4000',
  LOCK_POLL_MS: '200',
  CACHE_ROOT_CHECK: { readBy: 'main.ts (the start-up check of CACHE_ROOT)' },
  CACHE_ROOT_PROBE_MS: '2000',
  CACHE_ROOT_HANG_EXIT_MS: '0',
  CONDUCTOR_BEAT_MS: '10000',
  CONDUCTOR_DEAD_MS: '90000',
  RETRY_DELAYS_MS: '2000,4000',
  MAX_ATTEMPTS: '7',
  SHUTDOWN_GRACE_MS: '1000',
  PROGRESS_INTERVAL_MS: '1000',
  NODE_READ_LIMIT: '2',
  NODE_READ_BPS: '50Mi',
  NODE_WRITE_BPS: '50Mi',
  BACKGROUND_READ_BPS: '1M',
  BACKGROUND_WRITE_BPS: '1M',
  SHARE_PIECES: 'on',
  CLEANER_ENABLED: 'true',
  LEFTOVER_SWEEP_MS: '0',
  RESUMABLE_KEEP_MS: '0',
  JOB_KEEP_MS: '0',
  CLEANER_INTERVAL_MS: '5000',
  CLEANER_MAX_UNUSED_MS: '1000',
  CLEANER_NODE_BUDGET_BYTES: '1000000',
  CLEANER_GRACE_MS: '1000',
  ORIGIN_URL: 'https://other-origin.example/{imageId}',
  ORIGIN_AUTH_HEADER: 'X-Auth-Token: not-a-real-token',
  ORIGIN_CHECKSUM_HEADER: 'X-Sha256',
  ORIGIN_ATTEMPTS: '2',
  ORIGIN_IDLE_TIMEOUT_MS: '1000',
  ADMIN_PORT: { readBy: 'main.ts (app.listen)' },
  ADMIN_HOST: { readBy: 'main.ts (app.listen)' },
  ADMIN_TOKEN: 'a-token-of-at-least-16-characters',
  ADMIN_TLS_CERT_FILE: { readBy: 'main.ts (loadAdminTls, and again on SIGHUP)' },
  ADMIN_TLS_KEY_FILE: { readBy: 'main.ts (loadAdminTls, and again on SIGHUP)' },
  LOG_LEVEL: { readBy: 'main.ts (createRootLogger)' },
};

describe('conductorOptions: what each part is told, from the configuration in one place', () => {
  const before = conductorOptions(loadConductorConfig(base));

  it.each(Object.entries(OTHER_VALUE).filter(([, other]) => typeof other === 'string'))(
    '%s reaches a part',
    (name, other) => {
      const after = conductorOptions(loadConductorConfig({ ...base, [name]: other as string }));
      expect(after).not.toEqual(before);
    },
  );

  it('derives the CACHE_ROOT hang exit from LOCK_STALE_MS when it is unset, and takes 0 as never', () => {
    expect(before.cacheRootGuard.hangExitAfterMs).toBe(3 * 20_000);
    const never = conductorOptions(loadConductorConfig({ ...base, CACHE_ROOT_HANG_EXIT_MS: '0' }));
    expect(never.cacheRootGuard.hangExitAfterMs).toBe(0);
  });

  it('has no origin without ORIGIN_URL, and tells the origin client every ORIGIN_ setting with it', () => {
    const { ORIGIN_URL: _unset, ...withoutOrigin } = base;
    expect(conductorOptions(loadConductorConfig(withoutOrigin)).origin).toBeUndefined();
    const origin = conductorOptions(
      loadConductorConfig({ ...base, ORIGIN_AUTH_HEADER: 'X-Auth-Token: t', ORIGIN_ATTEMPTS: '3' }),
    ).origin;
    expect(origin).toEqual({
      urlTemplate: 'https://origin.example/images/{imageId}',
      authHeader: { name: 'X-Auth-Token', value: 't' },
      checksumHeader: 'X-Checksum-Sha256',
      attempts: 3,
      idleTimeoutMs: 30_000,
    });
  });

  it('gives the locks the four timings under their names, and makes them require the node folder', () => {
    const { locks } = conductorOptions(
      loadConductorConfig({
        ...base,
        LOCK_STALE_MS: '30000',
        LOCK_UPDATE_MS: '3000',
        LOCK_SAFETY_MARGIN_MS: '4000',
        LOCK_POLL_MS: '200',
      }),
    );
    expect(locks).toEqual({
      root: '/srv/cache',
      conductorId: 'conductor-a',
      requireNodeFolder: true,
      timings: { staleMs: 30_000, updateMs: 3_000, safetyMarginMs: 4_000, pollMs: 200 },
    });
  });

  it('shares pieces by default only where a byte-rate cap is set, and as SHARE_PIECES says otherwise', () => {
    const shares = (env: Record<string, string>) =>
      conductorOptions(loadConductorConfig({ ...base, ...env })).copy.fromPartialCopies;
    expect(shares({})).toBe(false);
    expect(shares({ NODE_WRITE_BPS: '16Mi' })).toBe(true);
    expect(shares({ NODE_READ_BPS: 'node-a=1M,*=0' })).toBe(true);
    expect(shares({ NODE_READ_BPS: 'node-a=0' })).toBe(false);
    expect(shares({ NODE_READ_BPS: '16Mi', SHARE_PIECES: 'off' })).toBe(false);
    expect(shares({ SHARE_PIECES: 'on' })).toBe(true);
  });
});
