/** The benches' command-line flags: `--name value` after the script (npm run bench:x -- --name value). */
export function flagValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

export function numberFlag(name: string): number | undefined {
  const value = flagValue(name);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: must be a positive number, got ${value}`);
  return n;
}
