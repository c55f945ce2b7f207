import { z } from 'zod';
import { imageIdSchema, nodeIdSchema } from '@app/contracts';

/** A query parameter that is wrong, and why: the body of a 400 answer. */
export interface ParameterProblem {
  parameter: string;
  reason: string;
}

export class InvalidQueryError extends Error {
  constructor(readonly problems: ParameterProblem[]) {
    super(problems.map((p) => `${p.parameter}: ${p.reason}`).join('; '));
    this.name = 'InvalidQueryError';
  }
}

const locksQuerySchema = z.strictObject(
  {
    node: nodeIdSchema.optional(),
    image: imageIdSchema.optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? 'unknown parameter (known: node, image)' : undefined,
  },
);

export type LocksQuery = z.output<typeof locksQuerySchema>;

/**
 * Validates GET /locks' query (node and image ids follow the same rules as everywhere else, so nothing
 * can point outside CACHE_ROOT). A repeated parameter arrives as an array and is refused.
 */
export function parseLocksQuery(query: unknown): LocksQuery {
  const result = locksQuerySchema.safeParse(query ?? {});
  if (result.success) return result.data;
  const reasons = new Map<string, string[]>();
  const add = (parameter: string, reason: string) =>
    reasons.set(parameter, [...(reasons.get(parameter) ?? []), reason]);
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') for (const key of issue.keys) add(key, issue.message);
    else
      add(
        String(issue.path[0] ?? '(query)'),
        issue.code === 'invalid_type' ? 'must be given once, as text' : issue.message,
      );
  }
  throw new InvalidQueryError(
    [...reasons].map(([parameter, list]) => ({ parameter, reason: list.join('; ') })),
  );
}
