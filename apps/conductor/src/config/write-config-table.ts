/* Rewrites the configuration table in README.md (npm run docs:config). */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { withConfigTable } from './config-table';

const readme = path.resolve(__dirname, '../../../../../README.md');
writeFileSync(readme, withConfigTable(readFileSync(readme, 'utf8')));
console.log(`updated ${readme}`);
