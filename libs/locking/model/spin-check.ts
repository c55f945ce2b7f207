import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** How the model is installed where it is checked (Debian package); the message of a missing tool says it. */
export const SPIN_INSTALL = 'apt-get update -qq && apt-get install -y spin';

/** The model lives beside this file (copied into dist/ by the build's --copy-files). */
export const MODEL_FILE = path.join(__dirname, 'lock-protocol.pml');

export interface ModelRun {
  name: string;
  /** -D macros for spin: bounds (NEXCL, NREAD, MAXFAULTS, MAXREMOVALS, ...) and variants (README.md). */
  defines: Record<string, number | true>;
  /** Check the liveness claim under weak fairness (pan -a -f) instead of the safety assertions. */
  liveness: boolean;
  /** A variant that must produce a counterexample (non-vacuity); the real model must produce none. */
  expectError: boolean;
}

export interface ModelResult {
  run: ModelRun;
  errors: number;
  statesStored: number;
  transitions: number;
  /** pan's own figure, in seconds. */
  panSeconds: number;
  /** Wall time of spin + cc + pan, in seconds. */
  wallSeconds: number;
  /** The counterexample's events (the model's printf lines), when there is one. */
  trail?: string;
  /** The raw .trail file pan wrote, when there is one. */
  trailFile?: string;
  commands: string[];
  panOutput: string;
}

const bounds = (nexcl: number, nread: number, faults: number, removals: number) => ({
  NEXCL: nexcl,
  NREAD: nread,
  MAXFAULTS: faults,
  MAXREMOVALS: removals,
});

/** Bounds that finish in seconds (part of npm test). */
export const CI_RUNS: ModelRun[] = [
  {
    name: 'cleaner+writer+reader, 1 pause/crash',
    defines: bounds(2, 1, 1, 0),
    liveness: false,
    expectError: false,
  },
  {
    name: 'cleaner+reader, 1 pause/crash, 1 removal',
    defines: bounds(1, 1, 1, 1),
    liveness: false,
    expectError: false,
  },
  {
    name: 'cleaner+writer, 1 pause/crash, 1 removal',
    defines: bounds(2, 0, 1, 1),
    liveness: false,
    expectError: false,
  },
  {
    name: 'liveness: cleaner+reader, 1 pause/crash, 1 removal',
    defines: bounds(1, 1, 1, 1),
    liveness: true,
    expectError: false,
  },
  {
    name: 'variant OLD_FIRST_GEN (clock-seeded first generation)',
    defines: { ...bounds(2, 1, 0, 0), OLD_FIRST_GEN: true },
    liveness: false,
    expectError: true,
  },
  {
    name: 'variant ABORT_ONLY (signal instead of assertStillHeld)',
    defines: { ...bounds(2, 1, 1, 0), ABORT_ONLY: true },
    liveness: false,
    expectError: true,
  },
  {
    name: 'variant TRUST_FROM_HB_START (Heartbeat.start today)',
    defines: { ...bounds(2, 1, 1, 0), TRUST_FROM_HB_START: true },
    liveness: false,
    expectError: true,
  },
  {
    name: "variant SAME_TICK_EPOCH (a re-made epoch with the removed life's floor: no clock rule)",
    defines: { ...bounds(2, 0, 1, 1), SAME_TICK_EPOCH: true },
    liveness: false,
    expectError: true,
  },
  {
    name: 'variant NO_CRASH_TAKEOVER (liveness claim can fail)',
    defines: { ...bounds(1, 1, 1, 0), NO_CRASH_TAKEOVER: true },
    liveness: true,
    expectError: true,
  },
];

/** Larger bounds (npm run model:check). */
export const LARGE_RUNS: ModelRun[] = [
  {
    name: 'cleaner+writer+reader, 1 removal',
    defines: bounds(2, 1, 0, 1),
    liveness: false,
    expectError: false,
  },
  {
    name: 'cleaner+2 writers, 1 pause/crash',
    defines: bounds(3, 0, 1, 0),
    liveness: false,
    expectError: false,
  },
  {
    name: 'cleaner+2 readers, 1 pause/crash',
    defines: bounds(1, 2, 1, 0),
    liveness: false,
    expectError: false,
  },
  {
    name: 'liveness: cleaner+writer+reader, 1 pause/crash',
    defines: bounds(2, 1, 1, 0),
    liveness: true,
    expectError: false,
  },
  {
    name: 'liveness: cleaner+writer+reader, 1 removal',
    defines: bounds(2, 1, 0, 1),
    liveness: true,
    expectError: false,
  },
];

/** Throws at once, with the install command, when spin or a C compiler is missing. */
export function requireTools(): void {
  const spin = spawnSync('spin', ['-V'], { encoding: 'utf8' });
  if (spin.error || spin.status !== 0)
    throw new Error(`spin (the model checker) is not installed: install it with \`${SPIN_INSTALL}\``);
  const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0)
    throw new Error('cc (a C compiler, needed to build pan) is not installed: apt-get install -y gcc');
}

function exec(cmd: string, args: string[], cwd: string, commands: string[]): string {
  commands.push([cmd, ...args].join(' '));
  const out = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (out.error) throw out.error;
  const text = `${out.stdout}${out.stderr}`;
  // pan exits 0 also when it found errors; a non-zero exit is a failure of the tool itself.
  if (out.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${out.status}:\n${text}`);
  return text;
}

function figure(output: string, pattern: RegExp, what: string): number {
  const m = pattern.exec(output);
  if (!m) throw new Error(`pan's output has no ${what}:\n${output}`);
  return Number(m[1]);
}

export interface RunOptions {
  /** pan's memory bound in MB; a search that needs more fails instead of stopping half-way unnoticed. */
  memLimitMb?: number;
  /** Hash compaction (-DHC4): much less memory per state, a tiny probability of missing a state. */
  hashCompaction?: boolean;
}

/** Generates pan in a fresh temp dir (never the repository), runs it, and reads its figures. */
export function runModel(run: ModelRun, options: RunOptions = {}): ModelResult {
  const started = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'icc-lock-model-'));
  const commands: string[] = [];
  try {
    fs.copyFileSync(MODEL_FILE, path.join(dir, 'lock-protocol.pml'));
    const defines = Object.entries({ ...run.defines, ...(run.liveness ? { LIVENESS: true } : {}) }).map(
      ([name, value]) => (value === true ? `-D${name}` : `-D${name}=${value}`),
    );
    exec('spin', [...defines, '-a', 'lock-protocol.pml'], dir, commands);
    const cc = ['-O2', '-w', '-DNOREDUCE', '-DCOLLAPSE', `-DMEMLIM=${options.memLimitMb ?? 2048}`];
    if (!run.liveness) cc.push('-DSAFETY');
    if (options.hashCompaction) cc.push('-DHC4');
    exec('cc', [...cc, '-o', 'pan', 'pan.c'], dir, commands);
    const panOutput = exec('./pan', ['-m1000000', ...(run.liveness ? ['-a', '-f'] : [])], dir, commands);
    if (/max search depth too small/.test(panOutput))
      throw new Error(`pan's search depth was too small:\n${panOutput}`);
    if (/MEMLIM|out of memory/i.test(panOutput)) throw new Error(`pan ran out of memory:\n${panOutput}`);
    const errors = figure(panOutput, /errors: (\d+)/, 'error count');
    // Without an error the search must have been complete, or "errors: 0" would prove nothing.
    if (errors === 0 && /Search not completed/.test(panOutput))
      throw new Error(`pan did not complete:\n${panOutput}`);
    const result: ModelResult = {
      run,
      errors,
      statesStored: figure(panOutput, /([\d.e+]+) states, stored/, 'states stored'),
      transitions: figure(panOutput, /([\d.e+]+) transitions/, 'transitions'),
      panSeconds: figure(panOutput, /elapsed time ([\d.e+]+)/, 'elapsed time'),
      wallSeconds: 0,
      commands,
      panOutput,
    };
    const trailPath = path.join(dir, 'lock-protocol.pml.trail');
    if (errors > 0 && fs.existsSync(trailPath)) {
      result.trailFile = fs.readFileSync(trailPath, 'utf8');
      const replay = exec('spin', [...defines, '-t', 'lock-protocol.pml'], dir, commands);
      result.trail = replay
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => /^(P\d+:|K REMOVED|spin: )/.test(line))
        .join('\n');
    }
    result.wallSeconds = (performance.now() - started) / 1000;
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function describeResult(r: ModelResult): string {
  const verdict = r.errors === 0 ? 'no error' : `${r.errors} error (counterexample)`;
  return `${r.run.name}: ${verdict}, ${r.statesStored} states stored, ${r.transitions} transitions, pan ${r.panSeconds} s, wall ${r.wallSeconds.toFixed(1)} s`;
}
