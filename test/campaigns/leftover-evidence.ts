import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { sleep } from '../support/async';
import type { LockLeftover } from '../support/cell-observers';
import type { FleetMember } from './conductor-fleet';

/** How often, and how far apart, the leftover key folders are listed (a beating entry moves between two). */
const LOOKS = 3;
const LOOK_GAP_MS = 3_000;

export interface LeftoverEvidence {
  /** The folder the evidence was written to. */
  dir: string;
  /** Per leftover lock entry: did its heartbeat's mtime move between the looks (beating) or not (frozen)? */
  entries: Array<{ entry: string; moved: boolean }>;
}

/**
 * What tells, after a run, why lock entries outlived the conductors' leftover sweep: each conductor's
 * output and hold log (a lock still proven by its watchdog is held, even by no caller), each live one's
 * GET /status (the sweep's last round, which conductor runs it: leaseTicks), and the leftover key folders
 * listed LOOKS times, LOOK_GAP_MS apart, with each entry's mtime: a heartbeat beating on, or a frozen one
 * the sweep should have collected.
 */
export async function keepLeftoverEvidence(
  dir: string,
  run: { root: string; holdLogs: string; members: FleetMember[]; live: FleetMember[] },
  locks: LockLeftover[],
): Promise<LeftoverEvidence> {
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  await fsp.cp(run.holdLogs, path.join(dir, 'holds'), { recursive: true });
  for (const m of run.members)
    await fsp.writeFile(path.join(dir, `${m.id}.log`), m.conductor.child.output.join(''));
  for (const m of run.live) {
    const answer = await m.admin.get('/status').catch(() => undefined);
    if (answer?.status === 200)
      await fsp.writeFile(path.join(dir, `${m.id}.status.json`), JSON.stringify(answer.json(), null, 1));
  }
  const keys = [...new Set(locks.map((l) => path.join(run.root, l.node, 'locks', l.imageId)))];
  const lines: string[] = [];
  const mtimes = new Map<string, Set<number>>();
  for (let look = 0; look < LOOKS; look++) {
    if (look > 0) await sleep(LOOK_GAP_MS);
    for (const key of keys) {
      const names = await fsp.readdir(key).catch(() => [] as string[]);
      lines.push(`${new Date().toISOString()} ${key}: ${names.join(' ')}`);
      // Reader entries, and holder entries inside the generation folders: the heartbeats.
      const inside = await Promise.all(
        names
          .filter((n) => /^g-\d+$/.test(n))
          .map(async (g) => (await fsp.readdir(path.join(key, g)).catch(() => [])).map((h) => `${g}/${h}`)),
      );
      for (const name of [...names, ...inside.flat()]) {
        const stat = await fsp.stat(path.join(key, name)).catch(() => undefined);
        lines.push(`  ${name} mtime=${stat?.mtime.toISOString() ?? 'gone'} ino=${stat?.ino ?? '-'}`);
        if (/(^|\/)[rh]~/.test(name) && stat) {
          const seen = mtimes.get(path.join(key, name)) ?? new Set<number>();
          mtimes.set(path.join(key, name), seen.add(stat.mtimeMs));
        }
      }
    }
  }
  await fsp.writeFile(path.join(dir, 'lock-folders.txt'), lines.join('\n') + '\n');
  return {
    dir,
    entries: [...mtimes].map(([entry, seen]) => ({
      entry: path.relative(run.root, entry),
      moved: seen.size > 1,
    })),
  };
}
