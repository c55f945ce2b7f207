import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..');

/** Folders that hold no documentation of ours: dependencies, build output, test runs, git. */
const NOT_OURS = new Set(['node_modules', 'dist', 'coverage', 'test-output', '.git']);

/** Every file of the repository under `dir` (relative to ROOT), without the folders of NOT_OURS. */
function filesUnder(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) return NOT_OURS.has(entry.name) ? [] : filesUnder(relative);
    return entry.isFile() ? [relative] : [];
  });
}

const FILES = filesUnder('');

/** The documents whose relative links must resolve: every Markdown file of the repository. */
const DOCUMENTS = FILES.filter((file) => file.endsWith('.md'));

/** The files whose prose may name a section of a document: sources, tests, lint rules, units, docs. */
const REFERRING = FILES.filter((file) => /\.(ts|mts|mjs|md|py|pml|sh|service|timer|conf)$/.test(file));

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

/**
 * The documents a file names together with one of their sections, as `docs/locking.md, "The protocol"`
 * or `README "Where things are"`: what the prose of `text` refers to.
 */
function sectionReferences(text: string): { document: string; section: string }[] {
  return [...text.matchAll(/(?<![\w./-])((?:[\w.-]+\/)*[\w.-]+\.md|README),? "([^"\n]{2,80})"/g)].map(
    (m) => ({
      document: m[1]!,
      section: m[2]!,
    }),
  );
}

/** The file (relative to ROOT) that `document`, named in the file `from`, means; undefined if none exists. */
function referencedFile(from: string, document: string): string | undefined {
  if (document === 'README') {
    // The nearest README.md up from the referring file: the model's own README for the model's files.
    for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
      const candidate = path.join(dir === '.' ? '' : dir, 'README.md');
      if (existsSync(path.join(ROOT, candidate))) return candidate;
      if (dir === '.' || dir === '') return undefined;
    }
  }
  const beside = path.join(path.dirname(from), document);
  if (existsSync(path.join(ROOT, beside))) return beside;
  return existsSync(path.join(ROOT, document)) ? document : undefined;
}

/** Headings and bold leads (`**Idle key folders are retired.**`) of a Markdown document, as plain text. */
function sectionTitles(markdown: string): string[] {
  const text = withoutCodeBlocks(markdown);
  const headings = [...text.matchAll(/^#{1,6}\s+(.*?)\s*#*\s*$/gm)].map((m) => m[1]!);
  const leads = [...text.matchAll(/\*\*([^*\n]+)\*\*/g)].map((m) => m[1]!);
  return [...headings, ...leads].map((title) => title.replace(/`/g, ''));
}

/** Why the section `section` of `document`, named in `from`, cannot be found; undefined when it can. */
function sectionProblemOf(from: string, document: string, section: string): string | undefined {
  const file = referencedFile(from, document);
  if (file === undefined) return `${document} does not exist`;
  const wanted = section.toLowerCase();
  const titles = sectionTitles(readFileSync(path.join(ROOT, file), 'utf8'));
  return titles.some((title) => title.toLowerCase().startsWith(wanted))
    ? undefined
    : `no heading or bold lead starting "${section}" in ${file}`;
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

  it('the section-reference rules find what prose names, and only that', () => {
    expect(
      sectionReferences(
        'see docs/locking.md, "Idle key folders are retired" and README "Where things are"; (docs/protocol.md "Jobs")',
      ),
    ).toEqual([
      { document: 'docs/locking.md', section: 'Idle key folders are retired' },
      { document: 'README', section: 'Where things are' },
      { document: 'docs/protocol.md', section: 'Jobs' },
    ]);
    expect(referencedFile('libs/locking/model/lock-protocol.pml', 'README')).toBe(
      'libs/locking/model/README.md',
    );
    expect(referencedFile('eslint/import-boundaries.mjs', 'README')).toBe('README.md');
    expect(referencedFile('docs/cache-layout.md', 'protocol.md')).toBe('docs/protocol.md');
    expect(sectionProblemOf('eslint.config.mjs', 'README', 'Where things are')).toBeUndefined();
    expect(sectionProblemOf('x.ts', 'docs/locking.md', 'Idle key folders are retired')).toBeUndefined();
    expect(sectionProblemOf('x.ts', 'README', 'Locks')).toBe(
      'no heading or bold lead starting "Locks" in README.md',
    );
    expect(sectionProblemOf('x.ts', 'docs/no-such-page.md', 'Locks')).toBe(
      'docs/no-such-page.md does not exist',
    );
  });

  it('every section named in code, tests, lint rules, units and docs exists in the document named', () => {
    const references = REFERRING.flatMap((file) =>
      sectionReferences(readFileSync(path.join(ROOT, file), 'utf8')).map((r) => ({ file, ...r })),
    );
    // The scan finds what there is (dozens of references), so an empty result means the scan broke.
    expect(references.length).toBeGreaterThan(20);
    const problems = references
      .map((r) => ({ r, problem: sectionProblemOf(r.file, r.document, r.section) }))
      .filter((p) => p.problem !== undefined)
      .map((p) => `${p.r.file}: ${p.r.document}, "${p.r.section}": ${p.problem}`);
    expect(problems).toEqual([]);
  });

  it('the README links every page under docs/, so none is found only by chance', () => {
    const linked = new Set(
      linkTargets(readFileSync(path.join(ROOT, 'README.md'), 'utf8')).map((t) => t.split('#')[0]),
    );
    const pages = DOCUMENTS.filter((document) => /^docs\/[^/]+\.md$/.test(document));
    expect(pages.length).toBeGreaterThan(10);
    expect(pages.filter((page) => !linked.has(page))).toEqual([]);
  });

  it.each(DOCUMENTS)('every relative link in %s resolves in the repository', (document) => {
    const problems = linkTargets(readFileSync(path.join(ROOT, document), 'utf8'))
      .map((target) => ({ target, problem: problemOf(document, target) }))
      .filter((p) => p.problem !== undefined)
      .map((p) => `${p.target}: ${p.problem}`);
    expect(problems).toEqual([]);
  });
});
