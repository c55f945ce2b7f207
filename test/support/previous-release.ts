import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { PROJECT_ROOT } from './child-processes';

/** The release this one must run beside (release/previous-release.json), built and ready to run. */
export interface PreviousRelease {
  version: string;
  commit: string;
  /** The built tree: dist/ and node_modules/ of that commit. */
  dir: string;
  conductorScript: string;
  agentScript: string;
  /** Whether this call built it (false: an earlier run's build was reused). */
  built: boolean;
  buildMs: number;
}

const BUILT_MARKER = '.icc-release-built';

/** `$XDG_CACHE_HOME` (or ~/.cache) /image-cache-conductor/releases: outside the clone, kept between runs. */
export function releaseCacheFolder(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache');
  return path.join(base, 'image-cache-conductor', 'releases');
}

/**
 * Builds the previous release from this repository's own history, once per machine: the recorded commit's
 * tree (git archive: no worktree is registered in the clone), `npm ci --prefer-offline` (the npm cache of
 * this clone's own `npm ci` serves it) and `npm run build`, in a folder named after the commit. A build
 * that did not finish leaves no folder that counts (it happens in a temporary folder renamed at the end),
 * so two runs at once, or one killed half-way, cannot leave a broken release behind. A clone without the
 * commit (a shallow clone, a fork without its history) fails at once with the command that fetches it.
 */
export function previousRelease(
  log: (line: string) => void = () => undefined,
  /** Which release (a test gives one this clone lacks). */
  recorded: { version: string; commit: string } = recordedPreviousRelease(),
): PreviousRelease {
  const { version, commit } = recorded;
  const present = spawnSync('git', ['-C', PROJECT_ROOT, 'cat-file', '-e', `${commit}^{commit}`], {
    stdio: 'ignore',
  });
  if (present.status !== 0)
    throw new Error(
      `the previous release ${version} (commit ${commit}, release/previous-release.json) is not in this clone; ` +
        `fetch it with: git -C ${PROJECT_ROOT} fetch origin ${commit}` +
        ` (a shallow clone: git -C ${PROJECT_ROOT} fetch --unshallow origin)`,
    );
  const dir = path.join(releaseCacheFolder(), commit);
  const paths = {
    dir,
    conductorScript: path.join(dir, 'dist', 'apps', 'conductor', 'src', 'main.js'),
    agentScript: path.join(dir, 'dist', 'apps', 'agent', 'src', 'main.js'),
  };
  if (existsSync(path.join(dir, BUILT_MARKER)))
    return { version, commit, ...paths, built: false, buildMs: 0 };

  const started = Date.now();
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  try {
    log(`building the previous release ${version} (${commit}) in ${dir}`);
    const tar = execFileSync('git', ['-C', PROJECT_ROOT, 'archive', '--format=tar', commit], {
      maxBuffer: 512 * 1024 * 1024,
    });
    execFileSync('tar', ['-x', '-C', partial], { input: tar });
    run(partial, 'npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']);
    run(partial, 'npm', ['run', 'build']);
    writeFileSync(path.join(partial, BUILT_MARKER), `${commit}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(partial, dir);
  } catch (error) {
    rmSync(partial, { recursive: true, force: true });
    throw error;
  }
  return { version, commit, ...paths, built: true, buildMs: Date.now() - started };
}

function recordedPreviousRelease(): { version: string; commit: string } {
  return JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'release', 'previous-release.json'), 'utf8')) as {
    version: string;
    commit: string;
  };
}

function run(cwd: string, command: string, args: string[]): void {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(' ')} in ${cwd} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`,
    );
}
