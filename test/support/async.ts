/** The generic waiting helpers of the tests, in one place. */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every `intervalMs` until `accept` takes its value, and returns that value. */
async function poll<T>(
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  what: string,
  timeoutMs: number,
  intervalMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Polls `probe` until it returns a truthy value. */
export function waitFor<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  return poll(probe, (value) => Boolean(value), what, timeoutMs, 25);
}

/** Polls `probe` until it returns a value (not undefined or false: 0 and '' count), and returns it. */
export function until<T>(
  probe: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  return poll(
    probe,
    (value) => value !== undefined && value !== false,
    what,
    timeoutMs,
    intervalMs,
  ) as Promise<T>;
}

/** A promise with its resolver, for handlers that hold a delivery until the test lets go. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
