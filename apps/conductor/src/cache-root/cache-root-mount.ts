import { promises as fsp } from 'node:fs';
import type { MountEntry } from './mount-attribute-cache';

/**
 * The mount holding CACHE_ROOT (its real path), from /proc/self/mountinfo; undefined where there is no
 * such file or no line covers it. `readInfo` is the start-up check's seam.
 */
export async function cacheRootMount(
  root: string,
  readInfo: () => Promise<string> = () => fsp.readFile('/proc/self/mountinfo', 'utf8'),
): Promise<MountEntry | undefined> {
  const info = await readInfo().catch(() => undefined);
  if (info === undefined) return undefined;
  return mountOf(info, await fsp.realpath(root).catch(() => root));
}

/** The mount holding `file`: the longest mount point that is a prefix of it. */
export function mountOf(mountInfo: string, file: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const line of mountInfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const mountPoint = unescapeMountPath(fields[4] ?? '');
    const [fsType, , superOptions] = right.split(' ');
    const inside =
      file === mountPoint || file.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`);
    if (!inside || !fsType || (best && best.mountPoint.length >= mountPoint.length)) continue;
    best = {
      mountPoint,
      fsType,
      options: [...(fields[5] ?? '').split(','), ...(superOptions ?? '').split(',')],
    };
  }
  return best;
}

function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
