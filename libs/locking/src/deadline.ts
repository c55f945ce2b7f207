import { ReasonError } from '@app/contracts';
import type { LockMode } from './lock-key';
import { type LockKey, lockKeyString } from './lock-key';

/**
 * Where an acquisition waits: its turn among this process's waiters for the key (in-process-queue.ts),
 * the key's gate (another holder's claim), or, holding the gate exclusively, the readers to leave.
 */
export type WaitStep = 'turn in this process' | 'gate' | 'readers to leave';

/**
 * One bounded wait shared by all the locks of an acquisition; ends in a retryable LOCK_TIMEOUT that names
 * every lock and the one it was still waiting for, at which step (what an operator needs to find the
 * holder: `icc locks`, GET /locks).
 */
export class Deadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private at?: { key: LockKey; step: WaitStep };
  readonly signal: AbortSignal;

  constructor(timeoutMs: number, outer: AbortSignal | undefined, keys: (LockKey & { mode: LockMode })[]) {
    const what = keys.map((k) => `${k.mode} ${lockKeyString(k)}`).join(', ');
    this.timer = setTimeout(() => {
      const at = this.at ? `; still waiting for ${lockKeyString(this.at.key)}: ${this.at.step}` : '';
      this.controller.abort(
        new ReasonError('LOCK_TIMEOUT', `waited ${timeoutMs} ms for locks (${what})${at}`),
      );
    }, timeoutMs);
    this.signal = outer ? AbortSignal.any([this.controller.signal, outer]) : this.controller.signal;
  }

  /** Records the step the acquisition waits at now, for the LOCK_TIMEOUT's message. */
  waitingAt(key: LockKey, step: WaitStep): void {
    this.at = { key, step };
  }

  throwIfOver(): void {
    if (this.signal.aborted) throw this.signal.reason;
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
