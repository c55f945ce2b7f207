import type { Logger } from '@app/contracts';
import { errorFields } from './logger';

type Listener<T> = (payload: T) => void;

/**
 * A minimal typed event emitter whose emit() never throws: a listener that throws is logged and the
 * remaining listeners still run. Our events are emitted from amqplib's socket callbacks and from timers,
 * where an exception would either kill the connection or crash the process.
 */
export class TypedEvents<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  constructor(private readonly logger: Logger) {}

  /** Returns a function that removes the listener. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (error) {
        this.logger.error({ ...errorFields(error), event: String(event) }, 'event listener threw; ignored');
      }
    }
  }
}
