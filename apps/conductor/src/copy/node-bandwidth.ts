import type { CopyPriority } from '@app/contracts';
import type { StreamPace } from '@app/image-store';
import { type ByteRateCaps, capOf } from '../config/byte-rate-caps';
import { ByteRateLimiter } from './byte-rate-limiter';

export interface NodeBandwidthCaps {
  read: ByteRateCaps;
  write: ByteRateCaps;
  backgroundRead: ByteRateCaps;
  backgroundWrite: ByteRateCaps;
}

/** What GET /status shows per node and direction: the caps and the bytes granted so far. */
export interface BandwidthView {
  node: string;
  direction: 'read' | 'write';
  bytesPerSecond: number;
  backgroundBytesPerSecond: number;
  bytes: number;
}

/** GET /status → `bandwidth`: the caps as configured, and the nodes copies have gone through so far. */
export interface BandwidthReport {
  caps: NodeBandwidthCaps;
  /** Per node and direction with a cap, since the conductor started. */
  nodes: BandwidthView[];
}

/**
 * This conductor's byte-rate caps (NODE_READ_BPS, NODE_WRITE_BPS and their BACKGROUND_ variants): one
 * limiter per node and direction, shared by every copy that reads from or writes into that node. Per
 * conductor, like NODE_READ_LIMIT: N conductors may move N times the cap through one node.
 */
export class NodeBandwidth {
  private readonly limiters = new Map<string, ByteRateLimiter>();

  constructor(
    private readonly caps: NodeBandwidthCaps,
    private readonly now?: () => number,
  ) {}

  /** The pace of one copy: reads charged to the source node, writes to the destination node. */
  pace(
    source: string,
    destination: string,
    priority: () => CopyPriority = () => 'interactive',
  ): StreamPace | undefined {
    const reads = this.limiter('read', source);
    const writes = this.limiter('write', destination);
    if (!reads && !writes) return undefined;
    return {
      afterRead: (bytes, signal) => reads?.take(bytes, priority(), signal) ?? Promise.resolve(),
      beforeWrite: (bytes, signal) => writes?.take(bytes, priority(), signal) ?? Promise.resolve(),
    };
  }

  /**
   * The cap a copy of `priority` gets from `node` in `direction` when it has the node to itself, in bytes
   * per second; 0: no cap. A background copy gets the lower of its own and the interactive cap.
   */
  rateOf(direction: 'read' | 'write', node: string, priority: CopyPriority): number {
    const all = capOf(direction === 'read' ? this.caps.read : this.caps.write, node);
    if (priority === 'interactive') return all;
    const background = capOf(
      direction === 'read' ? this.caps.backgroundRead : this.caps.backgroundWrite,
      node,
    );
    const caps = [all, background].filter((cap) => cap > 0);
    return caps.length === 0 ? 0 : Math.min(...caps);
  }

  describe(): BandwidthReport {
    return { caps: this.caps, nodes: this.view() };
  }

  view(): BandwidthView[] {
    return [...this.limiters]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, limiter]) => {
        const [direction, node] = key.split(' ') as ['read' | 'write', string];
        return { node, direction, ...limiter.rates, bytes: limiter.granted };
      });
  }

  /** The node's limiter for that direction; undefined when the node has no cap there. */
  private limiter(direction: 'read' | 'write', node: string): ByteRateLimiter | undefined {
    const key = `${direction} ${node}`;
    let limiter = this.limiters.get(key);
    if (limiter) return limiter;
    const rates = {
      bytesPerSecond: capOf(direction === 'read' ? this.caps.read : this.caps.write, node),
      backgroundBytesPerSecond: capOf(
        direction === 'read' ? this.caps.backgroundRead : this.caps.backgroundWrite,
        node,
      ),
    };
    if (rates.bytesPerSecond === 0 && rates.backgroundBytesPerSecond === 0) return undefined;
    this.limiters.set(key, (limiter = new ByteRateLimiter(rates, this.now)));
    return limiter;
  }
}
