/*
 * Where a process spent its CPU: the self time of a `node --cpu-prof` profile, by package (or our own
 * folder, or node: internals) and by function, as shares of the profile's duration (the rest is idle).
 * Run: node dist/bench/cpu-profile-summary.js <file.cpuprofile> [--top 25]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** node_modules/<package>, apps|libs/<unit>, node:<module>, or the V8 pseudo-frames ((idle), (gc), …). */
function area(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (module) return module[1]!;
  const ours = /\/(apps|libs|bench)\/([^/]+)\//.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  return url.startsWith('node:') ? url.split('/')[0]! : url;
}

export function summarize(profile: Profile, top: number): { byArea: string[][]; byFunction: string[][] } {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us);
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    add(areas, area(url, functionName), us);
    add(
      functions,
      `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist)\//, '')}:${lineNumber + 1}`,
      us,
    );
  }
  const rows = (map: Map<string, number>) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => [`${((100 * us) / total).toFixed(1)}%`, `${(us / 1000).toFixed(0)} ms`, name]);
  return { byArea: rows(areas), byFunction: rows(functions) };
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: cpu-profile-summary <file.cpuprofile> [--top N]');
  const topIndex = process.argv.indexOf('--top');
  const top = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 25;
  const { byArea, byFunction } = summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, top);
  console.log('self time by area:');
  for (const row of byArea) console.log(`  ${row.join('  ')}`);
  console.log('self time by function:');
  for (const row of byFunction) console.log(`  ${row.join('  ')}`);
}
