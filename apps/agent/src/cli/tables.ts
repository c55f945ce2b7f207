import Table from 'cli-table3';

/** Plain tables (no colours: output is often piped into logs or read by tests). */
export function table(head: string[], rows: string[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const row of rows) t.push(row);
  return t.toString();
}

/** A two-column key/value table. */
export function keyValueTable(rows: [string, string][]): string {
  const t = new Table({ style: { head: [], border: [] } });
  for (const [key, value] of rows) t.push([key, value]);
  return t.toString();
}
