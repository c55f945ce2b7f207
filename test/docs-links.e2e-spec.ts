import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..');

/** The documents whose relative links must resolve: README.md, docs/*.md and every other README. */
const DOCUMENTS = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
  'apps/agent/README.md',
  'apps/conductor/src/admin/README.md',
  'libs/locking/model/README.md',
  'test/campaigns/README.md',
];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function headingAnchor(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // a link counts by its text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** A Markdown document without its fenced code blocks. */
function withoutCodeBlocks(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
}

/** The text of a Markdown document outside fenced code blocks and inline code spans. */
function prose(markdown: string): string {
  return withoutCodeBlocks(markdown).replace(/`[^`\n]*`/g, '');
}

function anchorsOf(file: string): Set<string> {
  const anchors = new Set<string>();
  const counts = new Map<string, number>();
  for (const line of withoutCodeBlocks(readFileSync(file, 'utf8')).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = headingAnchor(heading[1]!);
    const seen = counts.get(base) ?? 0;
    counts.set(base, seen + 1);
    anchors.add(seen === 0 ? base : `${base}-${seen}`);
  }
  return anchors;
}

/** Inline links and images `[text](target "title")` and reference definitions `[id]: target`. */
function linkTargets(markdown: string): string[] {
  const text = prose(markdown);
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
  const references = [...text.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)].map(
    (m) => m[1]!,
  );
  return [...inline, ...references];
}

/** Why `target`, linked from `document`, does not resolve in the repository; undefined when it does. */
function problemOf(document: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto: ...: not in the repository
  const [pathPart, anchor] = target.split('#', 2) as [string, string | undefined];
  const file =
    pathPart === '' ? path.join(ROOT, document) : path.resolve(ROOT, path.dirname(document), pathPart);
  if (!file.startsWith(`${ROOT}${path.sep}`)) return 'points outside the repository';
  if (!existsSync(file)) return `${path.relative(ROOT, file)} does not exist`;
  if (anchor === undefined || !file.endsWith('.md')) return undefined;
  return anchorsOf(file).has(decodeURIComponent(anchor))
    ? undefined
    : `no heading with the anchor #${anchor} in ${path.relative(ROOT, file)}`;
}

describe('documentation links', () => {
  it('the anchor and link rules match what GitHub renders', () => {
    expect(headingAnchor('Why at most one exclusive holder (path by path)')).toBe(
      'why-at-most-one-exclusive-holder-path-by-path',
    );
    expect(headingAnchor('Locks (`libs/locking`)')).toBe('locks-libslocking');
    expect(headingAnchor('Messages (`libs/contracts`, [docs/protocol.md](docs/protocol.md))')).toBe(
      'messages-libscontracts-docsprotocolmd',
    );
    expect(
      linkTargets('[a](docs/x.md#y) `[b](not-a-link.md)`\n[c]: ../c.md\n```\n[d](code.md)\n```'),
    ).toEqual(['docs/x.md#y', '../c.md']);
    expect(problemOf('README.md', 'docs/protocol.md#delivery-guarantees')).toBeUndefined();
    expect(problemOf('docs/protocol.md', 'cache-layout.md')).toBeUndefined();
    expect(problemOf('README.md', 'docs/no-such-file.md')).toBe('docs/no-such-file.md does not exist');
    expect(problemOf('README.md', 'docs/protocol.md#no-such-section')).toBe(
      'no heading with the anchor #no-such-section in docs/protocol.md',
    );
    expect(problemOf('docs/protocol.md', '../../outside.md')).toBe('points outside the repository');
  });

  it.each(DOCUMENTS)('every relative link in %s resolves in the repository', (document) => {
    const problems = linkTargets(readFileSync(path.join(ROOT, document), 'utf8'))
      .map((target) => ({ target, problem: problemOf(document, target) }))
      .filter((p) => p.problem !== undefined)
      .map((p) => `${p.target}: ${p.problem}`);
    expect(problems).toEqual([]);
  });
});
