/** Parsers for the human units of command-line flags; each returns undefined for text it does not accept. */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

export const DURATION_HELP =
  'a number with a unit: ms, s, m, h, d or w (e.g. 90m, 36h, 14d); plain 0 means zero';

/** "14d" → 1209600000; "0" → 0. Fractions are allowed ("1.5h"); the result is whole milliseconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/i.exec(text);
  if (!match) return undefined;
  const value = Number(match[1]);
  const unit = match[2]?.toLowerCase();
  if (unit === undefined) return value === 0 ? 0 : undefined;
  const ms = Math.round(value * DURATION_UNITS[unit]!);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** The units a duration is shown in, largest first: days at most, like the help's examples (14d, 36h). */
const SHOWN_DURATION_UNITS = ['d', 'h', 'm', 's', 'ms'] as const;

/**
 * The inverse of parseDuration for a flag's default: the largest shown unit that divides `ms` exactly
 * (1209600000 → "14d", 3600000 → "1h", 1500 → "1500ms"), so a default is shown in the form it is typed.
 */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  const unit = SHOWN_DURATION_UNITS.find((u) => ms % DURATION_UNITS[u]! === 0) ?? 'ms';
  return `${ms / DURATION_UNITS[unit]!}${unit}`;
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

export const BYTES_HELP =
  'bytes, or a number with K, M, G, T or P (powers of 1024; KiB/KB forms too), e.g. 500G';

/** "500G" / "500GiB" / "500 GB" → 500·1024³; "123" → 123. Binary units throughout, like df -h. */
export function parseBytes(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$/i.exec(text);
  if (!match) return undefined;
  const bytes = Math.round(Number(match[1]) * BYTE_UNITS[(match[2] ?? '').toLowerCase()]!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
