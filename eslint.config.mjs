import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { boundaries } from './eslint/import-boundaries.mjs';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test-output/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-floating-promises': 'off',
      'no-empty': ['error', { allowEmptyCatch: false }],
    },
  },
  {
    // Every dependency rule of README "Where things are" (eslint/import-boundaries.mjs).
    files: ['**/*.ts', '**/*.mts'],
    plugins: { boundaries },
    rules: { 'boundaries/imports': 'error' },
  },
);
