import { existsSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT, compiled } from './child-processes';

/**
 * The child runs compiled, like production (`npm test` builds first). A build older than the sources
 * would test old code, so that is refused with the same advice.
 */
export function compiledCopyChild(): string {
  const child = compiled('test/support/image-store-copy-child.ts');
  const libDir = path.join(PROJECT_ROOT, 'libs/image-store/src');
  const sources = [
    'test/support/image-store-copy-child.ts',
    'test/support/source-read-counter.ts',
    ...readdirSync(libDir)
      .filter((name) => name.endsWith('.ts') && !name.endsWith('.spec.ts'))
      .map((name) => `libs/image-store/src/${name}`),
  ];
  for (const source of sources) {
    const js = path.join(PROJECT_ROOT, 'dist', source.replace(/\.ts$/, '.js'));
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(path.join(PROJECT_ROOT, source)).mtimeMs) {
      throw new Error(
        `${js} is missing or older than ${source}: run \`npm run build\` (npm test does it) first`,
      );
    }
  }
  return child;
}
