import { describe, expect, it } from 'vitest';
import { renderJobTable } from './job-commands';

describe('icc job status table', () => {
  it("a job's table shows the first nodes by id", () => {
    const outcomes = ['n3', 'n1', 'n2'].map((node) => ({ node, outcome: 'completed' as const, at: '' }));
    const text = renderJobTable(outcomes, 2);
    expect(text).toContain('n1');
    expect(text).toContain('n2');
    expect(text).not.toContain('n3');
  });
});
