import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { type Conductor, composeConductor } from './compose-conductor';
import { loadConductorConfig } from './config/load-conductor-config';
import { GracefulShutdown } from './lifecycle/graceful-shutdown';
import { HEADER_KEY_FILE } from './cache-root/header-key';

const silent = pino({ level: 'silent' });

describe('composeConductor: the parts of one conductor, made from its configuration', () => {
  let root: string;
  let conductor: Conductor | undefined;

  beforeEach(async () => {
    root = await makeTempDir('compose');
  });
  afterEach(async () => {
    conductor?.cacheRoot.stop();
    await conductor?.store.close();
    conductor = undefined;
    await removeDir(root);
  });

  const compose = (env: Record<string, string> = {}) =>
    composeConductor(
      loadConductorConfig({ CELL_ID: 'cell-1', CACHE_ROOT: root, HASH_WORKERS: '0', ...env }),
      { rootLogger: silent },
    );

  it('reads (or makes) the cell header key and connects nothing: the lifecycle start does', async () => {
    conductor = await compose();
    expect((await fsp.stat(path.join(root, HEADER_KEY_FILE))).size).toBeGreaterThan(0);
    expect(conductor.broker.state).not.toBe('connected');
    expect(conductor.lifecycle.state).toBe('starting');
    expect(conductor.lifecycle.consumerSubscribed).toBe(false);
    expect(conductor.topology.requestQueue.name).toContain('cell-1');
  });

  it('makes the origin download only when the cell has an origin', async () => {
    conductor = await compose();
    expect(conductor.origin).toBeUndefined();
    conductor.cacheRoot.stop();
    await conductor.store.close();
    conductor = await compose({ ORIGIN_URL: 'https://origin.example/{imageId}' });
    expect(conductor.origin?.describe()).toMatchObject({ urlTemplate: 'https://origin.example/{imageId}' });
  });

  it('points the metrics at the parts they read', async () => {
    conductor = await compose();
    expect(await conductor.metrics.registry.metrics()).not.toContain('round="holder-index"');
    await conductor.holders.refresh();
    expect(await conductor.metrics.registry.metrics()).toMatch(
      /icc_background_round_seconds\{round="holder-index"\} \d/,
    );
  });

  it('stops through GracefulShutdown: the lifecycle first, then the copy workers and the guard', async () => {
    conductor = await compose();
    await new GracefulShutdown(conductor).beforeApplicationShutdown();
    expect(conductor.lifecycle.state).toBe('stopped');
    expect(conductor.shutdown.signal.aborted).toBe(true);
  });
});
