import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// SWC instead of esbuild: Nest's dependency injection needs emitDecoratorMetadata.
// (.swcrc is for the build and leaves specs out, so the test transform is configured here.)
export default defineConfig({
  plugins: [
    swc.vite({
      swcrc: false,
      module: { type: 'es6' },
      jsc: {
        target: 'es2022',
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true },
        keepClassNames: true,
      },
    }),
  ],
  resolve: { tsconfigPaths: true },
  test: {
    include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'test/**/*.e2e-spec.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Multi-process tests are CPU-bound on a 2-core CI machine; two files at a time keeps them honest.
    maxWorkers: 2,
  },
});
