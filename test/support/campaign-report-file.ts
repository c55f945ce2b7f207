import * as path from 'node:path';
import { PROJECT_ROOT } from './child-processes';

/**
 * The report file of a campaign run: test-output/campaigns/<name>-<size>[-<fs>].json (no suffix on the
 * local folder). Written by test/campaigns/campaign-kit.ts, read by run-campaigns.ts (which is built on
 * its own, without test/campaigns).
 */
export function reportFile(name: string, size: string, fs: string): string {
  const suffix = fs === 'local' ? '' : `-${fs}`;
  return path.join(PROJECT_ROOT, 'test-output', 'campaigns', `${name}-${size}${suffix}.json`);
}
