import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionState } from '@app/messaging';
import type { LifecycleState } from '../lifecycle/conductor-lifecycle';
import { CacheRootGuard } from '../cache-root/cache-root-guard';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from '../cache-root/header-key';
import { ReadinessProbe } from './readiness-probe';

describe('ReadinessProbe', () => {
  let root: string;
  const logs: { obj: object; msg: string }[] = [];
  const log = {
    info: (obj: object, msg: string) => logs.push({ obj, msg }),
    warn: () => undefined,
    error: () => undefined,
  };
  const broker = {
    state: 'connected' as ConnectionState,
    lastError: undefined as Error | undefined,
    blocked: false,
  };
  const intake = { state: 'consuming' as LifecycleState, consumerSubscribed: true };
  const probe = () => new ReadinessProbe({ broker, intake, cacheRoot: root, conductorId: 'c1', log });

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-ready-'));
    Object.assign(broker, { state: 'connected', lastError: undefined, blocked: false });
    Object.assign(intake, { state: 'consuming', consumerSubscribed: true });
    logs.length = 0;
  });
  afterEach(async () => {
    await fsp.chmod(root, 0o755).catch(() => undefined);
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('is ready when connected, subscribed and the cache root is writable, and leaves no probe file', async () => {
    const report = await probe().check();
    expect(report).toEqual({
      ready: true,
      consumer: { up: true, state: 'consuming', subscribed: true },
      broker: { up: true, state: 'connected' },
      cacheRoot: { up: true, writable: true },
    });
    expect(await fsp.readdir(root)).toEqual([]);
  });

  it("is not ready while CACHE_ROOT is not the cell's folder (writable as it is), and ready again once it is", async () => {
    const key = await loadOrCreateHeaderKey(root);
    const cacheRootGuard = new CacheRootGuard({ cacheRoot: root, expectedKey: key, log });
    const p = new ReadinessProbe({ broker, intake, cacheRoot: root, cacheRootGuard, conductorId: 'c1', log });
    expect((await p.check()).ready).toBe(true);
    await fsp.rename(path.join(root, HEADER_KEY_FILE), path.join(root, 'away'));
    const report = await p.check();
    expect(report.ready).toBe(false);
    expect(report.cacheRoot).toMatchObject({
      up: false,
      cellFolder: false,
      error: expect.stringContaining('is gone'),
    });
    await fsp.rename(path.join(root, 'away'), path.join(root, HEADER_KEY_FILE));
    expect((await p.check()).ready).toBe(true);
  });

  it('is not ready while draining, even though the consumer is still subscribed', async () => {
    const p = probe();
    await p.check();
    // ConductorLifecycle.stop() sets 'draining' before it cancels the consumer.
    intake.state = 'draining';
    const report = await p.check();
    expect(report.ready).toBe(false);
    expect(report.consumer).toEqual({ up: false, state: 'draining', subscribed: true });
    expect(logs).toEqual([
      {
        msg: 'readiness: not ready',
        obj: expect.objectContaining({ ready: false, failing: ['consumer'], consumer: 'draining' }),
      },
    ]);
  });

  it('is not ready while starting, unsubscribed or disconnected, naming the broker error', async () => {
    intake.state = 'starting';
    expect((await probe().check()).consumer.up).toBe(false);
    intake.state = 'consuming';
    intake.consumerSubscribed = false;
    expect((await probe().check()).consumer.up).toBe(false);
    intake.consumerSubscribed = true;
    Object.assign(broker, { state: 'disconnected', lastError: new Error('ECONNREFUSED 127.0.0.1:5672') });
    const report = await probe().check();
    expect(report.ready).toBe(false);
    expect(report.broker).toEqual({
      up: false,
      state: 'disconnected',
      lastError: 'ECONNREFUSED 127.0.0.1:5672',
    });
  });

  it('is not ready while the broker blocks the connection (resource alarm): no answer could be sent', async () => {
    const p = probe();
    expect((await p.check()).ready).toBe(true);
    broker.blocked = true;
    const report = await p.check();
    expect(report.ready).toBe(false);
    expect(report.broker).toEqual({ up: false, state: 'connected', blocked: true });
    broker.blocked = false;
    expect((await p.check()).ready).toBe(true);
  });

  it('is not ready when the cache root cannot be written', async () => {
    const missing = new ReadinessProbe({
      broker,
      intake,
      cacheRoot: path.join(root, 'gone'),
      conductorId: 'c1',
      log,
    });
    const report = await missing.check();
    expect(report.ready).toBe(false);
    expect(report.cacheRoot).toMatchObject({
      up: false,
      writable: false,
      error: expect.stringMatching(/ENOENT/),
    });
  });
});
