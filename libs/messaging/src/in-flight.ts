import type { Delivery } from './delivery';

/** The deliveries whose handler runs or that are not settled yet, and who waits for there to be none. */
export class InFlight {
  private readonly deliveries = new Set<Delivery>();
  private drainWaiters: (() => void)[] = [];

  get size(): number {
    return this.deliveries.size;
  }

  add(delivery: Delivery): void {
    this.deliveries.add(delivery);
  }

  /** The delivery is done with; whoever waits for none in flight is answered when it was the last. */
  delete(delivery: Delivery): void {
    this.deliveries.delete(delivery);
    if (this.deliveries.size > 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Resolves true once nothing is in flight, false if `timeoutMs` passed first. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.deliveries.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.drainWaiters.push(done);
    });
  }

  /** The unsettled deliveries of one channel (they go back to the queue when it closes). */
  unsettledOf(channelGeneration: number): Delivery[] {
    return [...this.deliveries].filter((d) => !d.settled && d.channelGeneration === channelGeneration);
  }

  /** Marks every unsettled delivery lost (their channel is closed: the broker redelivers them). */
  markUnsettledLost(): void {
    for (const delivery of this.deliveries) if (!delivery.settled) delivery.markLost();
  }
}
