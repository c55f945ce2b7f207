import * as path from 'node:path';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from './support/child-processes';

/**
 * The project's ESLint config (eslint.config.mjs, rule boundaries/imports) on small sources placed, by
 * their file name, in one unit of the repository: each dependency rule of README "Where things are"
 * refuses its forbidden import, and the allowed imports beside it pass.
 */
describe('lint: dependency boundaries', () => {
  let eslint: ESLint;
  beforeAll(() => {
    eslint = new ESLint({ cwd: PROJECT_ROOT });
  });

  async function boundaryErrors(file: string, code: string): Promise<string[]> {
    const [result] = await eslint.lintText(code, { filePath: path.join(PROJECT_ROOT, file) });
    return result!.messages.filter((m) => m.ruleId === 'boundaries/imports').map((m) => m.message);
  }

  it.each([
    [
      'a lib imports an app',
      'libs/locking/src/probe.ts',
      "import '../../../apps/conductor/src/main';",
      /a lib never imports an app/,
    ],
    [
      'contracts imports one of ours',
      'libs/contracts/src/probe.ts',
      "import { ImageStore } from '@app/image-store';",
      /libs\/contracts may not import @app\/image-store \(it may import: none of ours\)/,
    ],
    [
      'contracts re-exports one of ours',
      'libs/contracts/src/probe.ts',
      "export { NodeLockManager } from '@app/locking';",
      /libs\/contracts may not import @app\/locking/,
    ],
    [
      'image-store imports locking',
      'libs/image-store/src/probe.ts',
      "import { NodeLockManager } from '@app/locking';",
      /libs\/image-store may not import @app\/locking/,
    ],
    [
      'image-store uses amqplib',
      'libs/image-store/src/probe.ts',
      "import { connect } from 'amqplib';",
      /libs\/image-store knows nothing of the broker: no amqplib/,
    ],
    [
      'locking imports messaging',
      'libs/locking/src/probe.ts',
      "import { Publisher } from '@app/messaging';",
      /libs\/locking knows nothing of the broker: no @app\/messaging/,
    ],
    [
      'the cleaner loads messaging lazily',
      'libs/cache-cleaner/src/probe.ts',
      "export const m = import('@app/messaging');",
      /libs\/cache-cleaner knows nothing of the broker/,
    ],
    [
      'the cleaner requires amqplib',
      'libs/cache-cleaner/src/probe.ts',
      "import amqp = require('amqplib');\nexport { amqp };",
      /no amqplib/,
    ],
    [
      'a lib reaches into another by path',
      'libs/cache-cleaner/src/probe.ts',
      "import { ImageStore } from '../../image-store/src/image-store';",
      /no relative import into another lib .*: use @app\/image-store/,
    ],
    [
      'an app reaches into a lib by path',
      'apps/agent/src/probe.ts',
      "import { ImageStore } from '../../../libs/image-store/src';",
      /use @app\/image-store/,
    ],
    [
      'a deep import past a lib entry',
      'apps/conductor/src/probe.ts',
      "import { CacheLayout } from '@app/image-store/cache-layout';",
      /only a lib's entry, @app\/image-store/,
    ],
    [
      'the agent imports conductor code',
      'apps/agent/src/copy/probe.ts',
      "import { CopyWorkflow } from '../../../conductor/src/copy/copy-workflow';",
      /apps\/agent never imports apps\/conductor code/,
    ],
    [
      'the conductor imports agent code',
      'apps/conductor/src/probe.ts',
      "import { formatBytes } from '../../agent/src/cli/units';",
      /apps\/conductor never imports apps\/agent code/,
    ],
    [
      'bench reaches past an app entry',
      'bench/probe.ts',
      "import { CopyWorkflow } from '../apps/conductor/src/copy/copy-workflow';",
      /bench\/ uses apps\/conductor through its public entry only/,
    ],
    [
      'bench uses test code',
      'bench/support/probe.ts',
      "import { TestCell } from '../../test/support/test-cell';",
      /bench\/ uses no test code/,
    ],
  ])('refuses: %s', async (_what, file, code, reason) => {
    const errors = await boundaryErrors(file, code);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(reason);
  });

  it.each([
    [
      'the cleaner uses image-store and locking',
      'libs/cache-cleaner/src/probe.ts',
      "import { ImageStore } from '@app/image-store';\nimport { NodeLockManager } from '@app/locking';\nexport { ImageStore, NodeLockManager };",
    ],
    [
      'a lib imports its own files',
      'libs/image-store/src/sub/probe.ts',
      "export { ImageStore } from '../image-store';",
    ],
    [
      'a lib spec uses the shared test helpers',
      'libs/image-store/src/probe.spec.ts',
      "export { makeTempDir } from '../../../test/support/temp-dirs';",
    ],
    [
      'the agent uses libs and the broker client',
      'apps/agent/src/probe.ts',
      "export { ImageStore } from '@app/image-store';\nexport { connect } from 'amqplib';",
    ],
    [
      'the conductor uses messaging',
      'apps/conductor/src/probe.ts',
      "export { Publisher } from '@app/messaging';",
    ],
    [
      'bench uses an app through its entry',
      'bench/probe.ts',
      "export { CopyWorkflow } from '../apps/conductor/src';",
    ],
    ['bench uses its own support', 'bench/probe.ts', "export { withCell } from './support/bench-cell';"],
  ])('allows: %s', async (_what, file, code) => {
    expect(await boundaryErrors(file, code)).toEqual([]);
  });
});
