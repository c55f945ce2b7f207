import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
    // A lib never imports an app; libs/contracts imports none of ours (README, "Where things are").
    files: ['libs/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: ['**/apps/**'] }] },
  },
  {
    files: ['libs/contracts/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: ['@app/*', '**/apps/**'] }] },
  },
  {
    // The cache cleaner runs in conductors and in the CLI beside them: files and locks only, no broker.
    files: ['libs/locking/**/*.ts', 'libs/image-store/**/*.ts', 'libs/cache-cleaner/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: ['@app/messaging', 'amqplib', '**/apps/**'] }] },
  },
);
