import { formatAge, formatBytes, formatMs } from '../cli/format';
import { keyValueTable, table } from '../cli/tables';

/*
 * Renders a conductor's GET /status as tables. The status document belongs to the conductor and may grow
 * (or lose) fields, so nothing here requires a field: known ones get a friendly layout, anything else is
 * still shown generically, and missing ones are simply left out.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const isScalar = (v: unknown) => v === null || ['string', 'number', 'boolean'].includes(typeof v);

/** A value formatted by what its key says it is (bytes, milliseconds, timestamps). */
export function formatValue(key: string, value: unknown, now = Date.now()): string {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'number') {
    if (/bytes/i.test(key)) return formatBytes(value);
    if (/Ms$/.test(key)) return formatMs(value);
    return String(value);
  }
  if (typeof value === 'string') {
    if (/(At|Time|since)$/i.test(key) && !Number.isNaN(Date.parse(value)) && /\d{4}-\d\d-\d\dT/.test(value))
      return `${value} (${formatAge(value, now)})`;
    return value;
  }
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (Array.isArray(value))
    return value.every(isScalar)
      ? value.map((v) => formatValue(key, v, now)).join(', ') || '-'
      : JSON.stringify(value);
  return JSON.stringify(value);
}

/** Nested objects as dotted keys. */
export function flatten(value: JsonObject, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, v] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (isObject(v) && Object.keys(v).length > 0) out.push(...flatten(v, name));
    else out.push([name, v]);
  }
  return out;
}

const IN_FLIGHT_COLUMNS: [string, (row: JsonObject, now: number) => string | undefined][] = [
  [
    'request',
    (r) =>
      Array.isArray(r.requestIds)
        ? r.requestIds.join(', ')
        : typeof r.requestId === 'string'
          ? r.requestId
          : undefined,
  ],
  ['image', (r) => (typeof r.imageId === 'string' ? r.imageId : undefined)],
  [
    'from -> to',
    (r) =>
      r.destination !== undefined
        ? `${typeof r.source === 'string' ? r.source : '?'} -> ${String(r.destination)}`
        : undefined,
  ],
  ['phase', (r) => (typeof r.phase === 'string' ? r.phase : undefined)],
  [
    'progress',
    (r) => {
      if (typeof r.bytesDone !== 'number') return undefined;
      const total = typeof r.bytesTotal === 'number' ? r.bytesTotal : 0;
      const pct = total > 0 ? ` (${Math.floor((100 * r.bytesDone) / total)}%)` : '';
      return `${formatBytes(r.bytesDone)}/${formatBytes(total)}${pct}`;
    },
  ],
  ['started', (r, now) => (typeof r.startedAt === 'string' ? formatAge(r.startedAt, now) : undefined)],
  ['elapsed', (r) => (typeof r.elapsedMs === 'number' ? formatMs(r.elapsedMs) : undefined)],
  ['lock wait', (r) => (typeof r.lockWaitMs === 'number' ? formatMs(r.lockWaitMs) : undefined)],
];

/** An array of objects as a table: the curated in-flight columns when they apply, else every key. */
function arrayTable(key: string, rows: Json[], now: number): string {
  const objects = rows.filter(isObject);
  if (objects.length === 0) return rows.map((r) => formatValue(key, r, now)).join('\n');
  if (key === 'inFlight') {
    const columns = IN_FLIGHT_COLUMNS.filter(([, get]) => objects.some((o) => get(o, now) !== undefined));
    if (columns.length > 0)
      return table(
        columns.map(([name]) => name),
        objects.map((o) => columns.map(([, get]) => get(o, now) ?? '-')),
      );
  }
  const keys = [...new Set(objects.flatMap((o) => Object.keys(o)))];
  return table(
    keys,
    objects.map((o) => keys.map((k) => formatValue(k, o[k], now))),
  );
}

/** A map of objects (e.g. queues by name) as a table with the map key as first column. */
function mapTable(key: string, value: JsonObject, now: number): string | undefined {
  const entries = Object.entries(value);
  if (entries.length === 0 || !entries.every(([, v]) => isObject(v) && Object.values(v).every(isScalar)))
    return undefined;
  const keys = [...new Set(entries.flatMap(([, v]) => Object.keys(v as JsonObject)))];
  return table(
    [key === 'queues' ? 'queue' : 'name', ...keys],
    entries.map(([name, v]) => [name, ...keys.map((k) => formatValue(k, (v as JsonObject)[k], now))]),
  );
}

const isRecord = (v: unknown): v is JsonObject => isObject(v) && Object.values(v).every(isScalar);

/**
 * Objects with a `name` found directly in a section or in arrays inside it (e.g. queues: request,
 * retry[], deadLetter), as one table; whatever else the section holds stays key/value.
 */
function namedRecordsTable(
  value: JsonObject,
  now: number,
): { table: string; rest: [string, unknown][] } | undefined {
  const records: JsonObject[] = [];
  const rest: JsonObject = {};
  for (const [key, v] of Object.entries(value)) {
    if (isRecord(v) && typeof v.name === 'string') records.push(v);
    else if (Array.isArray(v) && v.length > 0 && v.every((x) => isRecord(x) && typeof x.name === 'string'))
      records.push(...(v as JsonObject[]));
    else rest[key] = v;
  }
  if (records.length === 0) return undefined;
  const keys = [...new Set(records.flatMap((r) => Object.keys(r)))];
  return {
    table: table(
      keys,
      records.map((r) => keys.map((k) => formatValue(k, r[k], now))),
    ),
    rest: flatten(rest),
  };
}

const TITLES: Record<string, string> = {
  inFlight: 'In flight',
  totals: 'Totals',
  queues: 'Queues',
  broker: 'Broker',
  consumer: 'Consumer',
  locks: 'Locks',
};
/** Small objects that read best folded into the summary table. */
const FOLD_INTO_SUMMARY = new Set(['broker', 'consumer', 'cell', 'config']);

export function renderStatus(status: unknown, now = Date.now()): string {
  if (!isObject(status)) return `status: ${formatValue('status', status, now)}`;
  const summary: [string, string][] = [];
  const sections: string[] = [];
  for (const [key, value] of Object.entries(status)) {
    if (isScalar(value) || (Array.isArray(value) && value.length > 0 && value.every(isScalar)))
      summary.push([key, formatValue(key, value, now)]);
    else if (Array.isArray(value)) {
      const title = TITLES[key] ?? key;
      sections.push(value.length === 0 ? `${title}: none` : `${title}:\n${arrayTable(key, value, now)}`);
    } else if (isObject(value) && FOLD_INTO_SUMMARY.has(key) && flatten(value).length <= 12) {
      for (const [k, v] of flatten(value, key)) summary.push([k, formatValue(k.split('.').pop()!, v, now)]);
    } else if (isObject(value)) {
      const title = TITLES[key] ?? key;
      const kv = (entries: [string, unknown][]) =>
        keyValueTable(entries.map(([k, v]) => [k, formatValue(k.split('.').pop()!, v, now)]));
      const named = namedRecordsTable(value, now);
      const asMap = named ? undefined : mapTable(key, value, now);
      const entries = flatten(value);
      if (named)
        sections.push(`${title}:\n${named.table}${named.rest.length > 0 ? `\n${kv(named.rest)}` : ''}`);
      else sections.push(`${title}:\n${asMap ?? (entries.length > 0 ? kv(entries) : 'none')}`);
    }
  }
  return [summary.length > 0 ? keyValueTable(summary) : '', ...sections].filter(Boolean).join('\n\n');
}
