/** Small formatting helpers shared by the commands' human-readable output. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes)) return '-';
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`;
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  if (minutes < 60) return `${minutes}m${String(seconds).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** "3m12s ago" for an ISO timestamp (or a Date); "-" when absent or unreadable. */
export function formatAge(at: string | Date | undefined, now = Date.now()): string {
  if (at === undefined) return '-';
  const time = at instanceof Date ? at.getTime() : Date.parse(at);
  if (Number.isNaN(time)) return '-';
  const age = now - time;
  return age < 0 ? 'just now' : `${formatMs(age)} ago`;
}

export function shortSha(sha256: string | undefined): string {
  return sha256 ? sha256.slice(0, 12) : '-';
}

export function mibPerSecond(bytes: number, ms: number): string {
  if (ms <= 0) return '-';
  return `${(bytes / (1024 * 1024) / (ms / 1000)).toFixed(1)} MiB/s`;
}

/** Nearest-rank percentile of `values` (p in 0..100); undefined for an empty list. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}
