import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { linkUnlessPresent } from '@app/image-store';

/** In CACHE_ROOT, the one folder every conductor of a cell shares (a dot name is never a node id). */
export const HEADER_KEY_FILE = '.icc-header-key';

const KEY_PATTERN = /^[0-9a-f]{64}$/;

/**
 * The key the conductors of a cell sign their retry headers with (RetryHeaderSigner): read from
 * `<cacheRoot>/.icc-header-key`, created by the first conductor that finds none. Creation is a write to
 * a file of our own, then link() to the shared name, which fails if another conductor got there first (we
 * then read theirs): readers never see a half-written key, and all conductors end up with the same one.
 * Mode 0600: requesters are not meant to read it.
 */
export async function loadOrCreateHeaderKey(cacheRoot: string): Promise<Buffer> {
  const file = path.join(cacheRoot, HEADER_KEY_FILE);
  const existing = await readKey(file);
  if (existing) return existing;
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  const handle = await fsp.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${randomBytes(32).toString('hex')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await linkUnlessPresent(tmp, file); // taken: another conductor got there first, theirs is read below
  } finally {
    await fsp.unlink(tmp).catch(() => undefined);
  }
  const key = await readKey(file);
  if (!key) throw new Error(`${file}: vanished right after it was created`);
  return key;
}

async function readKey(file: string): Promise<Buffer | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const hex = text.trim();
  if (!KEY_PATTERN.test(hex))
    throw new Error(
      `${file}: must hold 64 lowercase hex characters (a 32-byte key); remove it to have a new one made (retry copies in flight then restart at attempt 1)`,
    );
  return Buffer.from(hex, 'hex');
}
