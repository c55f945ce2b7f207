/* Rewrites the configuration table in docs/configuration.md (npm run docs:config). */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CONFIG_TABLE_DOCUMENT, withConfigTable } from './config-table';

// Run from dist/apps/conductor/src/config/: the repository's root is five folders up.
const document = path.resolve(__dirname, '../../../../..', CONFIG_TABLE_DOCUMENT);
writeFileSync(document, withConfigTable(readFileSync(document, 'utf8')));
console.log(`updated ${document}`);
