import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type CellTopology, type CellTopologyOptions, cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { tmpLeftovers } from './cell-observers';
import { writeRandomFile } from './image-store-fixtures';
import { deleteCellTopology, requireRabbitMq, uniqueCellId, withChannel } from './rabbitmq';
import { makeTempDir, removeDir } from './temp-dirs';

/**
 * A temporary cell for one test: its own CACHE_ROOT, its own queue names, its topology declared up front
 * (so requests can be published before a conductor runs), and everything removed afterwards.
 */
export class TestCell {
  readonly store: ImageStore;
  readonly topology: CellTopology;

  private constructor(
    readonly cellId: string,
    readonly root: string,
    private readonly topologyOptions: CellTopologyOptions,
    /** With `nested`: the test's own folder holding CACHE_ROOT (as `cache/`), nothing else. */
    readonly parent?: string,
  ) {
    this.store = new ImageStore({ root, fsync: false });
    this.topology = cellTopology(cellId, topologyOptions);
  }

  /**
   * `nested`: CACHE_ROOT is a sub-folder of a temp folder of this test's own, so a test can check that
   * nothing is ever written beside CACHE_ROOT (the shared temp folder's listing changes with parallel tests).
   */
  static async create(options: {
    nodes: string[];
    topology?: CellTopologyOptions;
    nested?: boolean;
    /** An empty folder of the test's own for CACHE_ROOT (e.g. on a shared file system), removed by cleanup(). */
    root?: string;
  }): Promise<TestCell> {
    await requireRabbitMq();
    const dir = options.root ?? (await makeTempDir('cell'));
    const root = options.nested ? path.join(dir, 'cache') : dir;
    if (options.nested) await fsp.mkdir(root);
    const cell = new TestCell(
      uniqueCellId(),
      root,
      options.topology ?? { retryDelaysMs: [200, 500, 1000] },
      options.nested ? dir : undefined,
    );
    // Conductors copy only between registered nodes: every node of a test cell is registered here.
    for (const node of options.nodes) await cell.store.markers.registerNode(node, 'test-cell');
    await withChannel(async (channel) => {
      const { declareCellTopology } = await import('@app/messaging');
      await declareCellTopology(channel, cell.topology);
    });
    return cell;
  }

  /** Puts a random image of `bytes` bytes into a node's cache, verified; returns its checksum. */
  async seed(node: string, imageId: string, bytes: number): Promise<{ sha256: string; size: number }> {
    const file = path.join(this.root, `.seed-${imageId}`);
    const sha256 = await writeRandomFile(file, bytes);
    await this.store.imports.importImage(node, imageId, file);
    await fsp.rm(file);
    return { sha256, size: bytes };
  }

  /** Environment of a conductor serving this cell (fast lock timings for tests). */
  conductorEnv(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      CELL_ID: this.cellId,
      CACHE_ROOT: this.root,
      AMQP_URL: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
      ADMIN_PORT: '0',
      COPY_CONCURRENCY: '4',
      LOCK_STALE_MS: '2000',
      LOCK_UPDATE_MS: '1000',
      LOCK_SAFETY_MARGIN_MS: '500',
      LOCK_POLL_MS: '25',
      LOCK_WAIT_MS: '20000',
      RETRY_DELAYS_MS: (this.topologyOptions.retryDelaysMs ?? [200, 500, 1000]).join(','),
      SHUTDOWN_GRACE_MS: '10000',
      LOG_LEVEL: process.env.TEST_CONDUCTOR_LOG_LEVEL ?? 'info', // debug: to follow a campaign's copies
      ...overrides,
    };
  }

  /** Files left under tmp/ of any node (should be none once idle). */
  tmpLeftovers(): Promise<string[]> {
    return tmpLeftovers(this.root);
  }

  async cleanup(): Promise<void> {
    await this.removeTopology();
    await removeDir(this.parent ?? this.root);
  }

  /** The cell's queues and exchanges only: for a cell whose folder goes away with its file system. */
  async removeTopology(): Promise<void> {
    await deleteCellTopology(this.cellId, this.topologyOptions).catch(() => undefined);
  }
}
