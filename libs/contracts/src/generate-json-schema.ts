import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { copyRequestSchema } from './copy-request';
import { copyResultSchema } from './copy-result';
import {
  cancelAnswerSchema,
  cancelRequestSchema,
  jobEventSchema,
  jobRefusalSchema,
  precacheJobSchema,
  purgeJobSchema,
} from './job-messages';
import { progressEventSchema } from './progress-event';
import { REASON_CODES, type ReasonCode } from './reason-codes';

/**
 * docs/*.schema.json and the reason-code table in docs/protocol.md are generated from the zod schemas and
 * REASON_CODES, never edited by hand; generate-json-schema.spec.ts fails when the committed files drift.
 * Run: `npm run schema` (builds, then `node dist/libs/contracts/src/generate-json-schema.js [docsDir]`).
 */

const SCHEMAS = {
  'copy-request.v1.schema.json': copyRequestSchema,
  'copy-result.v1.schema.json': copyResultSchema,
  'progress-event.v1.schema.json': progressEventSchema,
  'precache-job.v1.schema.json': precacheJobSchema,
  'purge-job.v1.schema.json': purgeJobSchema,
  'cancel-request.v1.schema.json': cancelRequestSchema,
  'job-event.v1.schema.json': jobEventSchema,
  'cancel-answer.v1.schema.json': cancelAnswerSchema,
  'job-refusal.v1.schema.json': jobRefusalSchema,
} as const;

export const REASON_TABLE_START =
  '<!-- reason-codes:start (generated from REASON_CODES by `npm run schema`) -->';
export const REASON_TABLE_END = '<!-- reason-codes:end -->';

/** File name → exact file content (2-space JSON, trailing newline). */
export function renderJsonSchemas(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [file, schema] of Object.entries(SCHEMAS)) {
    // io 'input': the schema describes what a sender puts on the wire.
    const json = z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12' });
    const withId = {
      $schema: json.$schema,
      $id: `urn:image-cache-conductor:${file.replace('.schema.json', '')}`,
      ...json,
    };
    out[file] = `${JSON.stringify(withId, null, 2)}\n`;
  }
  return out;
}

/** Columns padded the way prettier pads markdown tables, so `npm run format` leaves the output alone. */
export function renderReasonCodeTable(): string {
  const rows = (Object.entries(REASON_CODES) as [ReasonCode, (typeof REASON_CODES)[ReasonCode]][]).map(
    ([code, { retryable, meaning }]) => [
      `\`${code}\``,
      retryable ? 'yes' : 'no',
      meaning.replace(/\|/g, '\\|'),
    ],
  );
  const header = ['Code', 'Retried', 'Meaning'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Replaces the text between the reason-code markers of protocol.md with the generated table. */
export function renderProtocolDoc(current: string): string {
  const start = current.indexOf(REASON_TABLE_START);
  const end = current.indexOf(REASON_TABLE_END);
  if (start < 0 || end < start) {
    throw new Error(`protocol.md must contain the markers ${REASON_TABLE_START} and ${REASON_TABLE_END}`);
  }
  return `${current.slice(0, start + REASON_TABLE_START.length)}\n\n${renderReasonCodeTable()}\n\n${current.slice(end)}`;
}

export function writeGeneratedDocs(docsDir: string): string[] {
  mkdirSync(docsDir, { recursive: true });
  const written: string[] = [];
  for (const [file, content] of Object.entries(renderJsonSchemas())) {
    writeFileSync(join(docsDir, file), content);
    written.push(join(docsDir, file));
  }
  const protocolPath = join(docsDir, 'protocol.md');
  writeFileSync(protocolPath, renderProtocolDoc(readFileSync(protocolPath, 'utf8')));
  written.push(protocolPath);
  return written;
}

// Guarded so that importing this module (from the spec) does not write files; `require` is undefined when
// vitest loads it as ESM.
if (typeof require !== 'undefined' && require.main === module) {
  const docsDir = resolve(process.argv[2] ?? 'docs');
  for (const file of writeGeneratedDocs(docsDir)) console.log(`wrote ${file}`);
}
