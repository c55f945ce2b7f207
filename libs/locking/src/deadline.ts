import { ReasonError } from '@app/contracts';
import type { LockMode } from './lock-key';
import { type LockKey, lockKeyString } from './lock-key';

/** One bounded wait shared by all the locks of an acquisition; ends in a retryable LOCK_TIMEOUT. */
export class Deadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  readonly signal: AbortSignal;

  constructor(timeoutMs: number, outer: AbortSignal | undefined, keys: (LockKey & { mode: LockMode })[]) {
    const what = keys.map((k) => `${k.mode} ${lockKeyString(k)}`).join(', ');
    this.timer = setTimeout(
      () =>
        this.controller.abort(new ReasonError('LOCK_TIMEOUT', `waited ${timeoutMs} ms for locks (${what})`)),
      timeoutMs,
    );
    this.signal = outer ? AbortSignal.any([this.controller.signal, outer]) : this.controller.signal;
  }

  throwIfOver(): void {
    if (this.signal.aborted) throw this.signal.reason;
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
