import { describe, expect, it } from 'vitest';
import { CI_RUNS, describeResult, requireTools, runModel } from './spin-check';

// Model checking of the lock protocol at small bounds (README.md beside this file); larger bounds:
// npm run model:check. A missing spin fails here at once, with the command that installs it.
describe('lock protocol model (spin)', () => {
  it('has its tools', () => {
    requireTools();
  });

  for (const run of CI_RUNS.filter((r) => !r.expectError)) {
    it(`finds no error: ${run.name}`, () => {
      requireTools();
      const result = runModel(run);
      console.log(describeResult(result));
      expect(result.statesStored).toBeGreaterThan(1000);
      expect(result.errors, result.trail ?? result.panOutput).toBe(0);
    });
  }

  for (const run of CI_RUNS.filter((r) => r.expectError)) {
    it(`finds a counterexample: ${run.name}`, () => {
      requireTools();
      const result = runModel(run);
      console.log(`${describeResult(result)}\n${result.trail ?? ''}`);
      expect(result.errors, result.panOutput).toBeGreaterThan(0);
      expect(result.trail).toMatch(/assertion violated|acceptance cycle|P\d+:/);
    });
  }
});
