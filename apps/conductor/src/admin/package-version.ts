import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The version in the nearest package.json above `from` (this file runs from apps/… in tests and from
 * dist/apps/… in production, so a fixed relative path would be wrong in one of them).
 */
export function readPackageVersion(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: unknown };
      if (typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no (readable) package.json here: look one folder up
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}
