import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cellTopology,
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_RETRY_DELAYS_MS,
  ICC_HEADERS,
} from './cell-topology';
import { renderJsonSchemas, renderProtocolDoc } from './generate-json-schema';
import { REASON_CODE_LIST } from './reason-codes';

// vitest runs from the repository root.
const docsDir = resolve(process.cwd(), 'docs');
const HOW_TO_FIX = 'docs are generated: run `npm run schema` and commit the result';

describe('generated docs', () => {
  it.each(Object.entries(renderJsonSchemas()))('%s matches the zod schema', (file, expected) => {
    const committed = readFileSync(join(docsDir, file), 'utf8');
    expect(committed, `${file} is out of date; ${HOW_TO_FIX}`).toBe(expected);
  });

  const protocol = readFileSync(join(docsDir, 'protocol.md'), 'utf8');

  it("protocol.md's reason-code table matches REASON_CODES", () => {
    expect(protocol, `protocol.md is out of date; ${HOW_TO_FIX}`).toBe(renderProtocolDoc(protocol));
    for (const code of REASON_CODE_LIST) expect(protocol).toMatch(new RegExp(`^\\| \`${code}\` +\\|`, 'm'));
  });

  it('protocol.md states the names, headers and defaults that cellTopology uses', () => {
    const t = cellTopology('CELL');
    const generic = (name: string) => `\`${name.replace('CELL', '<cell>')}\``;
    expect(protocol).toContain(generic(t.requestQueue.name));
    expect(protocol).toContain(generic(t.deadLetterQueue.name));
    expect(protocol).toContain(generic(t.eventsExchange.name));
    for (const q of t.retryQueues) expect(protocol).toContain(generic(q.name));
    for (const header of Object.values(ICC_HEADERS)) expect(protocol).toContain(`\`${header}\``);
    expect(protocol).toContain(`\`x-delivery-limit: ${DEFAULT_DELIVERY_LIMIT}\``);
    const delays = DEFAULT_RETRY_DELAYS_MS;
    expect(protocol).toContain(
      `Delay tiers are **${delays.slice(0, -1).join(', ')} and ${delays.at(-1)} ms**`,
    );
    expect(protocol).toContain(`at most **${DEFAULT_MAX_ATTEMPTS} attempts**`);
  });
});
