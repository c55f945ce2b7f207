import { ConductorRecords, judgeConductors } from '@app/image-store';
import { ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatAge } from '../cli/format';
import { table } from '../cli/tables';
import type { Terminal } from '../cli/terminal';
import { requireRoot } from '../node/node-commands';

/**
 * `icc conductors`: the cell's conductors from their records in the shared folder (works from any host
 * that mounts it), with their release, the shared-format versions they speak and whether they beat.
 */
export async function runConductors(
  options: { cacheRoot?: string; deadMs: string; json?: boolean },
  term: Terminal,
): Promise<ExitCodeValue> {
  const deadMs = Number(options.deadMs);
  if (!/^\d{1,9}$/.test(options.deadMs) || deadMs < 1)
    throw new UsageError(
      '--dead-ms',
      `must be a whole number of milliseconds above 0 (got ${JSON.stringify(options.deadMs)})`,
    );
  const records = new ConductorRecords(await requireRoot(options.cacheRoot));
  const now = Date.now();
  const cell = judgeConductors(await records.list(), now, deadMs);
  if (options.json) {
    term.out(JSON.stringify({ deadMs, conductors: cell }));
    return ExitCode.OK;
  }
  if (cell.length === 0) {
    term.out(`no conductor records in ${records.folder} (conductors before 1.1.0 write none)`);
    return ExitCode.OK;
  }
  term.out(
    table(
      ['conductor', 'state', 'version', 'host', 'protocols', 'started', 'last beat'],
      cell.map((c) => [
        c.conductorId,
        c.state === 'invalid' ? `invalid: ${c.problem ?? ''}` : c.state,
        c.record?.version ?? '',
        c.record?.host ?? '',
        c.record
          ? Object.entries(c.record.protocols)
              .map(([name, v]) => `${name}=${v}`)
              .join(' ')
          : '',
        c.record ? formatAge(c.record.startedAt, now) : '',
        c.record ? formatAge(c.record.lastBeatAt, now) : '',
      ]),
    ),
  );
  const versions = [...new Set(cell.filter((c) => c.state === 'live').map((c) => c.record!.version))];
  term.out(
    `${cell.filter((c) => c.state === 'live').length} live (${versions.join(', ') || 'none'}); dead: last beat over ${deadMs} ms ago by this host's clock`,
  );
  return ExitCode.OK;
}
