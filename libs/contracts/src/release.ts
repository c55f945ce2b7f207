import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { errorText } from './error-text';

/**
 * What this build is, for the cell: its version (package.json, the one source), the release it must run
 * beside (release/previous-release.json) and the versions of the shared formats it speaks. docs/upgrades.md
 * is the contract these numbers stand for.
 */

/**
 * The shared formats and the version of each this build reads and writes. A release that changes one in a
 * way N−1 cannot read raises its number only in the contract step of an expand-then-contract change
 * (docs/upgrades.md); a conductor refuses to start in a cell whose live conductors require more.
 */
export const PROTOCOLS = {
  /** Copy requests, results, progress and job messages (`"v"` in every body). */
  wire: 1,
  /**
   * `<node>/images`, `.meta.json`, `~pieces.json` (from 1.1.0, a new file 1.0.0 skips), `used/`, `pinned/`,
   * `tmp/` names, node markers.
   */
  cacheLayout: 1,
  /** Lock key folders: epoch, `g-<n>` generations, `h~`/`r~` entries. */
  locks: 1,
  /** The HMAC over the x-icc-* retry headers, keyed by the cell's header key file. */
  retrySignature: 1,
  /** `.icc-jobs/` and `.icc-cancels/`. */
  jobRecords: 1,
  /** `.icc-conductors/` (this file's ConductorRecord, written by conductors from 1.1.0). */
  conductorRecords: 1,
} as const;
export type ProtocolName = keyof typeof PROTOCOLS;
export const PROTOCOL_NAMES = Object.keys(PROTOCOLS) as ProtocolName[];

const VERSION = /^(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:[-+][0-9A-Za-z.+-]{1,64})?$/;
export const releaseVersionSchema = z
  .string()
  .max(80)
  .regex(VERSION, 'must be a version like 1.2.3 (optionally with a -pre or +build suffix)');

/** Orders two release versions by major, minor, patch (a suffix is not ordered: 1.1.0-rc1 counts as 1.1.0). */
export function compareVersions(a: string, b: string): number {
  const pa = VERSION.exec(a);
  const pb = VERSION.exec(b);
  if (!pa || !pb) throw new Error(`not a release version: ${JSON.stringify(pa ? b : a)}`);
  for (let i = 1; i <= 3; i++) {
    const diff = Number(pa[i]) - Number(pb[i]);
    if (diff !== 0) return diff;
  }
  return 0;
}

export interface ReleaseInfo {
  version: string;
  /** The release this one runs beside in a cell (N−1); null when the file is not there. */
  previous: { version: string; commit: string } | null;
}

const previousReleaseSchema = z.object({
  version: releaseVersionSchema,
  commit: z.string().regex(/^[0-9a-f]{40}$/, 'must be a full 40-digit commit hash'),
});

/**
 * The release of the package this file runs from: the nearest package.json above `from` (this file runs
 * from libs/… in tests and from dist/libs/… when built or installed, so a fixed relative path would be
 * wrong in one of them) and the `release/previous-release.json` beside it.
 */
export function readReleaseInfo(from: string = __dirname): ReleaseInfo {
  for (let dir = from; ; dir = path.dirname(dir)) {
    let pkg: { version?: unknown } | undefined;
    try {
      pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: unknown };
    } catch {
      // no (readable) package.json here: look one folder up
    }
    if (pkg && typeof pkg.version === 'string')
      return {
        version: pkg.version,
        previous: readPrevious(path.join(dir, 'release', 'previous-release.json')),
      };
    if (path.dirname(dir) === dir) return { version: 'unknown', previous: null };
  }
}

function readPrevious(file: string): ReleaseInfo['previous'] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not JSON (${errorText(error)})`);
  }
  const parsed = previousReleaseSchema.safeParse(json);
  if (!parsed.success)
    throw new Error(
      `${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}
