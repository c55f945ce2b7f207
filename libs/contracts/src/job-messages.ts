import { z } from 'zod';
import {
  byteCountSchema,
  checkVersion,
  decodeJsonObject,
  isoTimestampSchema,
  parseWithSchema,
  requestIdSchema,
  sha256Schema,
} from './copy-request';
import { holderIdSchema, imageIdSchema, nodeIdSchema } from './ids';
import { jobIdSchema } from './job-id';
import { REASON_CODE_LIST } from './reason-codes';

export const JOB_MESSAGE_VERSION = 1;
/** A job names at most this many nodes: beyond it, split the job (or use `all`). */
export const MAX_JOB_NODES = 1000;
/** Room for MAX_JOB_NODES node ids of the longest kind, so a too-long list is refused by `nodes`, not by size. */
export const MAX_JOB_MESSAGE_BYTES = 1024 * 1024;

/** The request id of a job's copy to one node: deterministic, so a job sent again never copies twice. */
export function jobCopyRequestId(jobId: string, node: string): string {
  return `${jobId}.${node}`;
}

const nodeSetFields = {
  nodes: z
    .array(nodeIdSchema)
    .min(1, 'must list at least one node')
    .max(MAX_JOB_NODES, `must list at most ${MAX_JOB_NODES} nodes (split the job, or use all)`)
    .refine((list) => new Set(list).size === list.length, 'must not name a node twice')
    .describe('The nodes to work on; exactly one of nodes and all.')
    .optional(),
  all: z
    .literal(true)
    .describe('Every registered node of the cell; exactly one of nodes and all.')
    .optional(),
  percent: z
    .number('must be a number')
    .gt(0, 'must be more than 0')
    .max(100, 'must be at most 100')
    .describe('With all: this share of the registered nodes (rounded up), chosen by the job id.')
    .optional(),
};

type NodeSet = { nodes?: string[]; all?: true; percent?: number };

function checkNodeSet(job: NodeSet, ctx: z.RefinementCtx): void {
  if (job.nodes === undefined && job.all === undefined)
    ctx.addIssue({ code: 'custom', path: ['nodes'], message: 'is required (or all: true)' });
  if (job.nodes !== undefined && job.all !== undefined)
    ctx.addIssue({ code: 'custom', path: ['all'], message: 'must not be given with nodes' });
  if (job.percent !== undefined && job.all === undefined)
    ctx.addIssue({ code: 'custom', path: ['percent'], message: 'is only allowed with all: true' });
}

export const precacheJobSchema = z
  .strictObject({
    v: z.literal(JOB_MESSAGE_VERSION).describe('Wire format version.'),
    type: z.literal('precache'),
    jobId: jobIdSchema,
    imageId: imageIdSchema,
    sha256: sha256Schema.describe('Expected SHA-256 of every copy.').optional(),
    ...nodeSetFields,
  })
  .superRefine(checkNodeSet)
  .meta({
    title: 'Pre-cache job v1',
    description:
      'Asks the conductors to bring one image onto a set of nodes. Published to icc.<cell>.jobs; ' +
      'unknown fields are rejected.',
  });

export const purgeJobSchema = z
  .strictObject({
    v: z.literal(JOB_MESSAGE_VERSION).describe('Wire format version.'),
    type: z.literal('purge'),
    jobId: jobIdSchema,
    imageId: imageIdSchema,
    forceUnpin: z
      .boolean()
      .describe('Delete pinned copies too (their pins are removed); default false: pinned nodes are kept.')
      .optional(),
    ...nodeSetFields,
  })
  .superRefine(checkNodeSet)
  .meta({
    title: 'Purge job v1',
    description:
      'Asks the conductors to delete one image from a set of nodes, each under its exclusive lock. ' +
      'Published to icc.<cell>.jobs; unknown fields are rejected.',
  });

export const cancelRequestSchema = z
  .strictObject({
    v: z.literal(JOB_MESSAGE_VERSION).describe('Wire format version.'),
    type: z.literal('cancel'),
    requestId: requestIdSchema
      .describe('The copy request to cancel; exactly one of requestId and jobId.')
      .optional(),
    jobId: jobIdSchema.describe('The job to cancel; exactly one of requestId and jobId.').optional(),
  })
  .refine((c) => (c.requestId === undefined) !== (c.jobId === undefined), {
    path: ['requestId'],
    message: 'exactly one of requestId and jobId is required',
  })
  .meta({
    title: 'Cancel request v1',
    description: 'Cancels a copy request or a job. Published to icc.<cell>.jobs; answered on reply_to.',
  });

export type PrecacheJob = z.infer<typeof precacheJobSchema>;
export type PurgeJob = z.infer<typeof purgeJobSchema>;
export type JobRequest = PrecacheJob | PurgeJob;
export type CancelRequest = z.infer<typeof cancelRequestSchema>;
export type JobsQueueMessage = JobRequest | CancelRequest;
export type JobType = JobRequest['type'];

const JOB_QUEUE_SCHEMAS = {
  precache: precacheJobSchema,
  purge: purgeJobSchema,
  cancel: cancelRequestSchema,
} as const;

/**
 * Parses a message of the jobs queue (a pre-cache or purge job, or a cancel). Throws UNSUPPORTED_VERSION
 * or INVALID_REQUEST naming each field, e.g. `nodes: must list at least one node`.
 */
export function parseJobsQueueMessage(body: Buffer | string | unknown): JobsQueueMessage {
  const message = decodeJsonObject(body, MAX_JOB_MESSAGE_BYTES);
  checkVersion(message, JOB_MESSAGE_VERSION);
  const type = message.type;
  if (typeof type !== 'string' || !(type in JOB_QUEUE_SCHEMAS))
    return parseWithSchema(
      z.strictObject({
        type: z.enum(['precache', 'purge', 'cancel'], 'must be "precache", "purge" or "cancel"'),
      }),
      { type },
    ) as never;
  return parseWithSchema(
    JOB_QUEUE_SCHEMAS[type as keyof typeof JOB_QUEUE_SCHEMAS] as z.ZodType<JobsQueueMessage>,
    message,
  );
}

/** What happened on one node of a job. */
export const NODE_OUTCOMES = [
  'completed',
  'already-present',
  'deleted',
  'absent',
  'failed',
  'busy',
  'pinned',
  'cancelled',
  'skipped-unknown',
  'skipped-draining',
] as const;
export type NodeOutcomeKind = (typeof NODE_OUTCOMES)[number];
/** Outcomes that count as the job having done what was asked on that node. */
export const SUCCESSFUL_NODE_OUTCOMES: readonly NodeOutcomeKind[] = [
  'completed',
  'already-present',
  'deleted',
  'absent',
];

export const nodeOutcomeSchema = z.looseObject({
  node: nodeIdSchema,
  outcome: z.enum(NODE_OUTCOMES),
  reason: z.enum(REASON_CODE_LIST).optional(),
  detail: z.string().max(4096).optional(),
  bytes: byteCountSchema.optional(),
  conductorId: holderIdSchema.optional(),
  at: isoTimestampSchema,
});
export type NodeOutcome = z.infer<typeof nodeOutcomeSchema>;

export const JOB_EVENT_TYPES = ['job-accepted', 'job-progress', 'job-result'] as const;

/** Loose: readers ignore unknown fields (as for results). */
export const jobEventSchema = z
  .looseObject({
    v: z.literal(JOB_MESSAGE_VERSION).describe('Wire format version.'),
    type: z.enum(JOB_EVENT_TYPES),
    jobId: jobIdSchema,
    jobType: z.enum(['precache', 'purge']),
    imageId: imageIdSchema,
    nodesTotal: z.int().min(0),
    nodesDone: z.int().min(0),
    bytesDone: byteCountSchema.describe('Bytes copied (pre-cache) or freed (purge) on the nodes done.'),
    cancelled: z.boolean().optional(),
    /** job-progress: the node that just finished, or whose copy changed phase. */
    node: nodeIdSchema.optional(),
    phase: z.string().max(64).optional(),
    outcome: nodeOutcomeSchema.optional(),
    /** job-result (and job-accepted): every node's outcome so far. */
    nodes: z.array(nodeOutcomeSchema).optional(),
    at: isoTimestampSchema,
  })
  .meta({
    title: 'Job event v1',
    description:
      'Published to the events exchange with routing key job.<jobId>: job-accepted once the job is ' +
      'durable, job-progress as nodes finish, job-result when every node has an outcome. May be duplicated.',
  });
export type JobEvent = z.infer<typeof jobEventSchema>;

/**
 * cancelled: the job was marked cancelled, or the copy was running on the answering conductor and was
 * aborted; recorded: the answering conductor does not run the copy: whichever conductor takes it (queued,
 * waiting for a retry, or running elsewhere) answers it CANCELLED; already-final: the job had finished;
 * not-found: no such job.
 */
export const CANCEL_STATUSES = ['cancelled', 'recorded', 'already-final', 'not-found'] as const;

export const cancelAnswerSchema = z
  .looseObject({
    v: z.literal(JOB_MESSAGE_VERSION),
    type: z.literal('cancel-answer'),
    requestId: requestIdSchema.optional(),
    jobId: jobIdSchema.optional(),
    status: z.enum(CANCEL_STATUSES),
    detail: z.string().max(4096),
    conductorId: holderIdSchema,
    at: isoTimestampSchema,
  })
  .meta({
    title: 'Cancel answer v1',
    description:
      'The answer to a cancel request, on its reply_to and on the events exchange (cancel.<status>).',
  });
export type CancelAnswer = z.infer<typeof cancelAnswerSchema>;

/** The answer to a jobs-queue message that was refused (invalid, unknown version, job id reused). */
export const jobRefusalSchema = z
  .looseObject({
    v: z.literal(JOB_MESSAGE_VERSION),
    type: z.literal('job-refused'),
    jobId: jobIdSchema.optional(),
    reason: z.enum(REASON_CODE_LIST),
    detail: z.string().max(4096),
    conductorId: holderIdSchema,
    at: isoTimestampSchema,
  })
  .meta({
    title: 'Job refusal v1',
    description:
      'The answer to a refused message of the jobs queue, on its reply_to (and on job.<jobId> when the id ' +
      'could be read); the message is dead-lettered with the reason.',
  });
export type JobRefusal = z.infer<typeof jobRefusalSchema>;

/** Any answer a client of the jobs queue may get on its reply_to. */
export function parseJobsAnswer(body: Buffer | string | unknown): JobEvent | CancelAnswer | JobRefusal {
  const message = decodeJsonObject(body, MAX_JOB_MESSAGE_BYTES);
  checkVersion(message, JOB_MESSAGE_VERSION);
  if (message.type === 'cancel-answer') return parseWithSchema(cancelAnswerSchema, message);
  if (message.type === 'job-refused') return parseWithSchema(jobRefusalSchema, message);
  return parseWithSchema(jobEventSchema, message);
}
