/*
 * The dependency rules of README "Where things are", as one ESLint rule (`boundaries/imports`). A file
 * belongs to a unit: libs/<name>, apps/<name>, test, bench or scripts. Imports between units go through a
 * lib's entry (`@app/<name>`, never `@app/<name>/deep` and never a relative path into another unit), and
 * only along the allowed edges below. test/lint-boundaries.e2e-spec.ts shows each refusal.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** Which of our libs each lib may import (`@app/<name>`); a lib never imports an app. */
const LIB_DEPENDENCIES = {
  contracts: [],
  locking: ['contracts'],
  'image-store': ['contracts'],
  messaging: ['contracts'],
  'cache-cleaner': ['contracts', 'image-store', 'locking'],
  credentials: [],
  fanout: ['contracts'],
};

/** Packages a unit must not use: the libs that know nothing of the broker. */
const NO_BROKER = ['amqplib', '@app/messaging'];
const FORBIDDEN_PACKAGES = {
  'libs/contracts': NO_BROKER,
  'libs/locking': NO_BROKER,
  'libs/image-store': NO_BROKER,
  'libs/cache-cleaner': NO_BROKER,
  'libs/credentials': NO_BROKER,
  'libs/fanout': NO_BROKER,
};

/** Spec and fixture files may use the shared test helpers (test/support) beside their lib. */
const TEST_HELPER = /\.(spec|fixture)\.ts$/;

function unitOf(relative) {
  const [top, name] = relative.split(path.sep);
  if ((top === 'libs' || top === 'apps') && name !== undefined) return `${top}/${name}`;
  if (top === 'test' || top === 'bench' || top === 'scripts') return top;
  return undefined;
}

function check(file, source) {
  const from = unitOf(path.relative(ROOT, file));
  if (from === undefined) return undefined;
  const [fromTop, fromName] = from.split('/');

  if (source.startsWith('@app/')) {
    const [, lib, ...deep] = source.split('/');
    if (deep.length > 0) return `import ${source}: only a lib's entry, @app/${lib}`;
    if (FORBIDDEN_PACKAGES[from]?.includes(source))
      return `${from} knows nothing of the broker: no ${source}`;
    if (fromTop === 'libs' && lib !== fromName && !(LIB_DEPENDENCIES[fromName] ?? []).includes(lib))
      return `${from} may not import @app/${lib} (it may import: ${(LIB_DEPENDENCIES[fromName] ?? []).map((l) => '@app/' + l).join(', ') || 'none of ours'})`;
    return undefined;
  }
  if (!source.startsWith('.')) {
    if (FORBIDDEN_PACKAGES[from]?.includes(source))
      return `${from} knows nothing of the broker: no ${source}`;
    return undefined;
  }

  const target = path.resolve(path.dirname(file), source);
  const to = unitOf(path.relative(ROOT, target));
  if (to === from) return undefined;
  if (to === undefined) return `import ${source}: outside the project's units`;
  const [toTop, toName] = to.split('/');
  if (fromTop === 'libs' && toTop === 'apps') return `a lib never imports an app (${source})`;
  if (
    toTop === 'test' &&
    TEST_HELPER.test(file) &&
    path.relative(ROOT, target).startsWith(`test${path.sep}support`)
  )
    return undefined;
  if (toTop === 'libs') return `no relative import into another lib (${source}): use @app/${toName}`;
  if (fromTop === 'apps' && toTop === 'apps') return `${from} never imports ${to} code (${source})`;
  if (fromTop === 'bench' && toTop === 'apps') {
    // An app's public entry is its src/index.ts (the folder or the file, with or without extension).
    const entry = path.join(ROOT, to, 'src');
    if (target === entry || target === path.join(entry, 'index') || target === path.join(entry, 'index.ts'))
      return undefined;
    return `bench/ uses ${to} through its public entry only (${path.relative(path.dirname(file), entry)})`;
  }
  if (fromTop === 'bench' && toTop === 'test')
    return `bench/ uses no test code (${source}): bench/support has its own helpers`;
  if (fromTop === 'test' || fromTop === 'scripts') return undefined;
  return `${from} may not import ${to} (${source})`;
}

const importsRule = {
  meta: {
    type: 'problem',
    docs: {
      description: 'Dependencies point one way, and only through entry points (README "Where things are").',
    },
    schema: [],
    messages: { refused: '{{reason}}' },
  },
  create(context) {
    const file = context.filename ?? context.getFilename();
    const report = (node, source) => {
      if (typeof source !== 'string') return;
      const reason = check(file, source);
      if (reason) context.report({ node, messageId: 'refused', data: { reason } });
    };
    const fromSource = (node) => node.source && report(node.source, node.source.value);
    return {
      ImportDeclaration: fromSource,
      ExportNamedDeclaration: fromSource,
      ExportAllDeclaration: fromSource,
      ImportExpression: (node) => node.source.type === 'Literal' && report(node.source, node.source.value),
      TSImportEqualsDeclaration: (node) =>
        node.moduleReference.type === 'TSExternalModuleReference' &&
        report(node.moduleReference.expression, node.moduleReference.expression.value),
      CallExpression: (node) =>
        node.callee.type === 'Identifier' &&
        node.callee.name === 'require' &&
        node.arguments[0]?.type === 'Literal' &&
        report(node.arguments[0], node.arguments[0].value),
    };
  },
};

export const boundaries = { rules: { imports: importsRule } };
