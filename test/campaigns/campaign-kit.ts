import { randomInt } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { reportFile } from '../support/campaign-report-file';
import { type CampaignFsKind, campaignFsKind } from './campaign-fs';

/*
 * What every campaign shares: its size (CI or large), its seed, a seeded PRNG, and a report with figures.
 *
 * CAMPAIGN_SIZE=ci|large picks the parameters (default ci: what `npm test` runs); CAMPAIGN_SEED=<n>
 * replays a run: the seed drives every random choice of a campaign (fault times, kinds and victims,
 * request order, image sizes, fuzzed messages), so a failure is reproduced by running it again with the
 * seed it printed. Process timing stays what it is: the same plan, not the same interleaving.
 */

export type CampaignSize = 'ci' | 'large';

export function campaignSize(): CampaignSize {
  const value = process.env.CAMPAIGN_SIZE ?? 'ci';
  if (value !== 'ci' && value !== 'large')
    throw new Error(`CAMPAIGN_SIZE must be ci or large (got ${JSON.stringify(value)})`);
  return value;
}

/** CAMPAIGN_SEED (a 32-bit unsigned integer), or a fresh one. */
export function campaignSeed(): number {
  const given = process.env.CAMPAIGN_SEED;
  if (given === undefined || given === '') return randomInt(1, 2 ** 31);
  const seed = Number(given);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32)
    throw new Error(`CAMPAIGN_SEED must be an integer in 0..2^32-1 (got ${JSON.stringify(given)})`);
  return seed;
}

/** mulberry32: a small, fast, seeded 32-bit PRNG (good enough to drive a test plan, not for crypto). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded random choices. `fork(label)` gives an independent stream, so adding draws in one part of a
 * campaign does not shift the choices of another. */
export class Rng {
  readonly next: () => number;

  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }

  fork(label: string): Rng {
    let h = this.seed ^ 0x9e3779b9;
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
    return new Rng(h >>> 0);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** Picks by weight: `[[value, weight], ...]`. */
  weighted<T>(choices: ReadonlyArray<readonly [T, number]>): T {
    const total = choices.reduce((sum, [, w]) => sum + w, 0);
    let r = this.next() * total;
    for (const [value, weight] of choices) {
      r -= weight;
      if (r < 0) return value;
    }
    return choices[choices.length - 1]![0];
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  hex(length: number): string {
    let s = '';
    for (let i = 0; i < length; i++) s += Math.floor(this.next() * 16).toString(16);
    return s;
  }
}

/** The context a campaign runs in. */
export interface CampaignRun {
  name: string;
  size: CampaignSize;
  seed: number;
  rng: Rng;
  /** The file system of the shared folder (CAMPAIGN_FS; campaigns that support it: campaign-fs.ts). */
  fs: CampaignFsKind;
}

export function campaignRun(name: string): CampaignRun {
  const size = campaignSize();
  const seed = campaignSeed();
  const fs = campaignFsKind();
  // Printed first, so that even a run that hangs or crashes tells how to replay it.
  console.log(
    `[campaign ${name}] size=${size} seed=${seed} fs=${fs} (replay: CAMPAIGN_SEED=${seed} CAMPAIGN_SIZE=${size} CAMPAIGN_FS=${fs})`,
  );
  return { name, size, seed, rng: new Rng(seed), fs };
}

/**
 * The admin token of a campaign's conductors: the campaign's name makes it long enough for ADMIN_TOKEN's
 * minimum whatever the seed (`campaign-<seed>` alone was refused for seeds below 10^6).
 */
export function adminToken(run: Pick<CampaignRun, 'name' | 'seed'>): string {
  return `campaign-${run.name}-${run.seed}`;
}

/** Picks the parameters of the run's size. */
export function bySize<T>(run: Pick<CampaignRun, 'size'>, sizes: Record<CampaignSize, T>): T {
  return sizes[run.size];
}

/**
 * Prints a campaign's figures as one line and writes them to its reportFile() (the last run of each size
 * and file system; test-output/ is not committed).
 */
/** What every campaign run gives: its violations and its figures (the report's body). */
export interface CampaignOutcome {
  violations: string[];
  figures: Record<string, unknown>;
}

/** Runs a campaign and writes its report (violations and figures) before the test judges it. */
export async function runAndReport<T extends CampaignOutcome>(
  run: CampaignRun,
  campaign: () => Promise<T>,
): Promise<T> {
  const outcome = await campaign();
  writeReport(run, { violations: outcome.violations, ...outcome.figures });
  return outcome;
}

export function writeReport(run: CampaignRun, report: object): void {
  const full = {
    campaign: run.name,
    size: run.size,
    seed: run.seed,
    fs: run.fs,
    at: new Date().toISOString(),
    ...report,
  };
  console.log(`[campaign ${run.name}] ${JSON.stringify(full)}`);
  const file = reportFile(run.name, run.size, run.fs);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(full, null, 2) + '\n');
}

/** Counts values: `{ value: count }`. */
export function tally(values: Iterable<string>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

/** Clean-up steps registered while a campaign sets things up, run in reverse order (errors collected). */
export class Cleanups {
  private readonly steps: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];

  add(what: string, fn: () => Promise<unknown> | unknown): void {
    this.steps.push({ what, fn });
  }

  async run(): Promise<void> {
    const errors: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.fn();
      } catch (error) {
        errors.push(`${step.what}: ${String(error)}`);
      }
    }
    if (errors.length > 0) throw new Error(`clean-up failed:\n${errors.join('\n')}`);
  }
}
