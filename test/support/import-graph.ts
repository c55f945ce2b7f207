import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

/*
 * The import graph of the product code (apps/ and libs/), read from the sources' import and export
 * lines, for the check that it has no circle: neither between files nor between the folders of an app.
 */

/** file (relative to the root) -> the project files it imports; `@app/<lib>` is the lib's index.ts. */
export type ImportGraph = Map<string, Set<string>>;

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s+['"]([^'"]+)['"]|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g;

function sourceFiles(root: string, dir: string): string[] {
  return readdirSync(path.join(root, dir)).flatMap((name) => {
    const relative = path.join(dir, name);
    if (name === 'node_modules' || name === 'model') return [];
    if (statSync(path.join(root, relative)).isDirectory()) return sourceFiles(root, relative);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [relative] : [];
  });
}

function resolveImport(root: string, from: string, source: string): string | undefined {
  let target: string;
  if (source.startsWith('@app/')) target = path.join('libs', source.slice('@app/'.length), 'src', 'index');
  else if (source.startsWith('.')) target = path.join(path.dirname(from), source);
  else return undefined;
  for (const candidate of [`${target}.ts`, path.join(target, 'index.ts')]) {
    try {
      if (statSync(path.join(root, candidate)).isFile()) return path.normalize(candidate);
    } catch {
      // not this form of the path
    }
  }
  return undefined;
}

/** The graph of every .ts file under `dirs` (specs included: a spec that imports back would be a circle too). */
export function importGraph(root: string, dirs: readonly string[]): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of dirs.flatMap((dir) => sourceFiles(root, dir))) {
    const imports = new Set<string>();
    for (const match of readFileSync(path.join(root, file), 'utf8').matchAll(IMPORT)) {
      const target = resolveImport(root, file, match[1] ?? match[2]!);
      if (target !== undefined && target !== file) imports.add(target);
    }
    graph.set(file, imports);
  }
  return graph;
}

/**
 * The graph between the folders of each app and lib: `apps/conductor/src/lifecycle` imports
 * `apps/conductor/src/requests` when one of its files does. Files directly in src/ (main.ts, the module,
 * index.ts) compose the folders and are left out.
 */
export function folderGraph(graph: ImportGraph): ImportGraph {
  const folderOf = (file: string) => {
    const parts = file.split(path.sep);
    return parts.length > 4 && parts[2] === 'src' ? parts.slice(0, 4).join('/') : undefined;
  };
  const folders: ImportGraph = new Map();
  for (const [file, imports] of graph) {
    const from = folderOf(file);
    if (from === undefined) continue;
    const targets = folders.get(from) ?? new Set<string>();
    folders.set(from, targets);
    for (const target of imports) {
      const to = folderOf(target);
      if (to !== undefined && to !== from) targets.add(to);
    }
  }
  return folders;
}

/** Every circle of the graph, as the nodes of one strongly connected component (Tarjan), sorted. */
export function circles(graph: ImportGraph): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, next);
    low.set(node, next);
    next += 1;
    stack.push(node);
    onStack.add(node);
    for (const target of graph.get(node) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) low.set(node, Math.min(low.get(node)!, index.get(target)!));
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1) found.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}
