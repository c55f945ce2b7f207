import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { PROJECT_ROOT } from './child-processes';

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it). playwright-core never downloads one. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Screenshots and other artefacts of browser tests (gitignored). */
export const TEST_OUTPUT_DIR = path.join(PROJECT_ROOT, 'test-output');

/**
 * Starts the system chromium headless. A missing browser is a failure with the fix in the message, never
 * a skip: a test suite that silently skips its browser check proves nothing about the page.
 * `extraArgs`: more switches, e.g. `--ignore-certificate-errors-spki-list=<hash>` to trust one test key.
 */
export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH))
    throw new Error(
      `${CHROMIUM_PATH} is missing: the status page's browser test drives Debian's chromium. ` +
        'Install it with `apt-get update && apt-get install -y chromium` (.ci/run does this when it is missing).',
    );
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: 60_000,
  });
}

/** Where to write a test artefact; creates test-output/ when needed. */
export async function testOutputPath(name: string): Promise<string> {
  await fsp.mkdir(TEST_OUTPUT_DIR, { recursive: true });
  return path.join(TEST_OUTPUT_DIR, name);
}
