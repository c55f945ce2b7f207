import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { connect } from 'amqplib';
import { type CellTopology, cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { declareCellTopology } from '@app/messaging';
import { HOSTS_LOCK_TIMINGS } from '../../campaigns/hosts';
import { AdminHttp } from '../admin-http';
import type { ChildProcessPool } from '../child-processes';
import { ConductorProcess } from '../conductor-process';
import { writeRandomFile } from '../image-store-fixtures';
import { uniqueCellId } from '../rabbitmq';
import type { HostBed } from './host-bed';

/** A conductor running on a simulated host, with its admin endpoint on the host's address. */
export interface BedConductor {
  id: string;
  host: string;
  conductor: ConductorProcess;
  admin: AdminHttp;
}

/**
 * A cell on the multi-host bed, for the bed's focused tests: nodes registered and images seeded through
 * the served folder (the machine's own view), the cell's topology declared on the bed's cluster, and
 * conductors started on hosts (own namespace, own mount as CACHE_ROOT) with the across-hosts campaign's
 * lock timings.
 */
export class BedCell {
  /** The cell as the machine sees it (bed.root): for seeding and for observers that are not a host. */
  readonly store: ImageStore;
  private readonly token = randomBytes(16).toString('hex');

  private constructor(
    private readonly bed: HostBed,
    private readonly pool: ChildProcessPool<unknown>,
    readonly cellId: string,
    readonly topology: CellTopology,
    readonly retryDelaysMs: number[],
  ) {
    this.store = new ImageStore({ root: bed.root, fsync: false });
  }

  static async create(
    bed: HostBed,
    pool: ChildProcessPool<unknown>,
    nodes: string[],
    retryDelaysMs = [200, 500, 1000],
  ): Promise<BedCell> {
    const cellId = uniqueCellId('bed');
    const topology = cellTopology(cellId, { retryDelaysMs });
    const connection = await connect(bed.brokers().urls[0]!);
    try {
      await declareCellTopology(await connection.createChannel(), topology);
    } finally {
      await connection.close();
    }
    const cell = new BedCell(bed, pool, cellId, topology, retryDelaysMs);
    for (const node of nodes) await cell.store.markers.registerNode(node, 'host-bed');
    return cell;
  }

  /** Imports `bytes` of random data as `imageId` on `node`; returns what a verified copy must hash to. */
  async seed(node: string, imageId: string, bytes: number): Promise<{ sha256: string; size: number }> {
    const staging = path.join(this.bed.base, `seed-${randomBytes(4).toString('hex')}`);
    const sha256 = await writeRandomFile(staging, bytes);
    await this.store.imports.importImage(node, imageId, staging);
    await fsp.rm(staging);
    return { sha256, size: bytes };
  }

  /** Starts conductor `id` on `host` and waits until it consumes; `env` overrides the defaults below. */
  async start(host: string, id: string, env: Record<string, string> = {}): Promise<BedConductor> {
    const conductor = ConductorProcess.start(
      this.pool,
      {
        CELL_ID: this.cellId,
        CONDUCTOR_ID: id,
        CACHE_ROOT: this.bed.cacheRoot(host),
        AMQP_URL: this.bed.brokers().urls[0]!,
        ADMIN_PORT: '0',
        ADMIN_HOST: '0.0.0.0',
        ADMIN_TOKEN: this.token,
        COPY_CONCURRENCY: '4',
        LOCK_STALE_MS: String(HOSTS_LOCK_TIMINGS.staleMs),
        LOCK_UPDATE_MS: String(HOSTS_LOCK_TIMINGS.updateMs),
        LOCK_SAFETY_MARGIN_MS: String(HOSTS_LOCK_TIMINGS.safetyMarginMs),
        LOCK_POLL_MS: String(HOSTS_LOCK_TIMINGS.pollMs),
        LOCK_WAIT_MS: '60000',
        RETRY_DELAYS_MS: this.retryDelaysMs.join(','),
        LOG_LEVEL: 'info',
        ...env,
      },
      300_000,
      { launcher: this.bed.launcher(host) },
    );
    await conductor.ready(60_000);
    return { id, host, conductor, admin: AdminHttp.of(conductor, this.token, this.bed.address(host)) };
  }
}
