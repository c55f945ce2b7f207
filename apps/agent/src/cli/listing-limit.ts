import { UsageError } from './exit-codes';

/**
 * Rows an icc listing shows unless told otherwise (--limit): a cell of thousands of nodes would otherwise
 * fill the screen, and every row costs reads of the shared file system.
 */
export const DEFAULT_LISTING_LIMIT = 200;

/** `--limit <n>`: a positive whole number; the default when not given. */
export function parseLimit(text: string | undefined, fallback = DEFAULT_LISTING_LIMIT): number {
  if (text === undefined) return fallback;
  const limit = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(limit) || limit < 1)
    throw new UsageError(
      '--limit',
      `must be a whole number of rows, 1 or more (got ${JSON.stringify(text)})`,
    );
  return limit;
}

/** The line that says a listing was cut, or undefined when everything was shown. */
export function cutNotice(shown: number, total: number, what: string): string | undefined {
  return total > shown ? `… ${total - shown} more ${what} (use --limit)` : undefined;
}
