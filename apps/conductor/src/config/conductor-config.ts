import * as os from 'node:os';
import { z } from 'zod';
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAYS_MS, cellIdSchema, holderIdSchema } from '@app/contracts';
import { DEFAULT_LOCK_TIMINGS, lockTimingProblems } from '@app/locking';

/*
 * The conductor's whole configuration, read once from the environment at start. Each entry: the
 * variable, its schema, its default and what it means. The README's configuration table is generated
 * from CONFIG_VARIABLES (npm run docs:config) and a spec checks it is up to date.
 */

const integer = (min: number, max: number) =>
  z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

const msList = z.string().transform((s, ctx) => {
  const parts = s.split(',').map((p) => Number(p.trim()));
  if (parts.length === 0 || parts.some((n) => !Number.isInteger(n) || n < 1)) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a comma-separated list of positive whole milliseconds, e.g. 1000,5000,30000',
    });
    return z.NEVER;
  }
  return parts;
});

const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false (also 1/0, yes/no)' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const DAY_MS = 86_400_000;

const defaultConductorId = () =>
  `${
    os
      .hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '') || 'conductor'
  }-${process.pid}`;

export const CONFIG_VARIABLES = {
  CELL_ID: {
    schema: cellIdSchema,
    default: undefined,
    doc: 'The cell this conductor serves; part of every queue and exchange name. Required.',
  },
  CACHE_ROOT: {
    schema: z
      .string()
      .min(1, 'must not be empty')
      .refine((p) => p.startsWith('/'), 'must be an absolute path'),
    default: undefined,
    doc: 'The shared folder holding one sub-folder per node. Required.',
  },
  AMQP_URL: {
    schema: z.string().regex(/^amqps?:\/\//, 'must start with amqp:// or amqps://'),
    default: 'amqp://guest:guest@127.0.0.1:5672',
    doc: 'RabbitMQ connection URL.',
  },
  CONDUCTOR_ID: {
    schema: holderIdSchema,
    default: defaultConductorId,
    doc: "This replica's id in lock entries, results and logs. Default: <hostname>-<pid>.",
  },
  COPY_CONCURRENCY: {
    schema: integer(1, 256),
    default: 4,
    doc: 'Copies run at once; also the consumer prefetch.',
  },
  HASH_WORKERS: {
    schema: integer(0, 256),
    default: () => os.availableParallelism(),
    doc: "Worker threads that stream and hash copies, so copies use every core and the main thread stays free for messages and the admin endpoint. 0: copies run on the main thread. Default: the machine's cores (os.availableParallelism()).",
  },
  LOCK_WAIT_MS: {
    schema: integer(100, 3_600_000),
    default: 60_000,
    doc: 'How long a copy waits for its two locks before a retryable LOCK_TIMEOUT.',
  },
  LOCK_STALE_MS: {
    schema: integer(2_000, 3_600_000),
    default: DEFAULT_LOCK_TIMINGS.staleMs,
    doc: 'A lock whose heartbeat has not moved for this long may be taken over. At least 2000 (proper-lockfile refuses less). Must exceed the longest pause you expect (GC, VM freeze) and, on NFS, the attribute cache time. Lowering it alone can break the relations under LOCK_UPDATE_MS: the conductor then exits with status 78 and names the pair.',
  },
  LOCK_UPDATE_MS: {
    schema: integer(1_000, 3_600_000),
    default: DEFAULT_LOCK_TIMINGS.updateMs,
    doc: 'Heartbeat interval of held locks. At least 1000, at most half of LOCK_STALE_MS, and below LOCK_STALE_MS minus LOCK_SAFETY_MARGIN_MS (otherwise a healthy holder would distrust its own lock between two beats).',
  },
  LOCK_SAFETY_MARGIN_MS: {
    schema: integer(1, 3_600_000),
    default: DEFAULT_LOCK_TIMINGS.safetyMarginMs,
    doc: 'A holder trusts its lock only while its last heartbeat is younger than LOCK_STALE_MS minus this; it is also the time a holder that passed its check has before a waiter may take over. Positive; see LOCK_UPDATE_MS for its relation to the other two.',
  },
  LOCK_POLL_MS: {
    schema: integer(1, 60_000),
    default: DEFAULT_LOCK_TIMINGS.pollMs,
    doc: 'Re-check interval while waiting for a lock (file-system watches usually wake waiters sooner; NFS needs the poll). At most LOCK_STALE_MS.',
  },
  RETRY_DELAYS_MS: {
    schema: msList,
    default: DEFAULT_RETRY_DELAYS_MS.join(','),
    doc: 'Delay tiers of the retry path, ascending; one queue per tier.',
  },
  MAX_ATTEMPTS: {
    schema: integer(1, 100),
    default: DEFAULT_MAX_ATTEMPTS,
    doc: 'Attempts of a retryable failure before the request fails with RETRIES_EXHAUSTED.',
  },
  SHUTDOWN_GRACE_MS: {
    schema: integer(0, 3_600_000),
    default: 30_000,
    doc: 'On SIGTERM, how long in-flight copies may finish before they are aborted and handed back to the queue.',
  },
  PROGRESS_INTERVAL_MS: {
    schema: integer(50, 60_000),
    default: 500,
    doc: 'Minimum time between two progress events of one copy.',
  },
  NODE_READ_LIMIT: {
    schema: integer(1, 1024),
    default: 4,
    doc: 'Copies this conductor reads from one source node at once (per conductor: N conductors may read N times this from a node). A copy waits for a read slot before taking its locks, within LOCK_WAIT_MS (then a retryable LOCK_TIMEOUT); source choice prefers a node with a free slot.',
  },
  CLEANER_ENABLED: {
    schema: flag,
    default: 'false',
    doc: 'Run the cache cleaner on every node of the cell each CLEANER_INTERVAL_MS. Off by default: nothing is ever deleted unless this is set.',
  },
  LEFTOVER_SWEEP_MS: {
    schema: integer(0, 7 * DAY_MS).refine(
      (ms) => ms === 0 || ms >= 1_000,
      'must be 0 (off) or at least 1000',
    ),
    default: 60_000,
    doc: "Time between rounds of the leftover sweep, which collects lock entries and partial files of dead attempts that no later copy of the same image comes for, each under that image's exclusive lock, once they stayed unchanged for LOCK_STALE_MS. 0 turns it off.",
  },
  CLEANER_INTERVAL_MS: {
    schema: integer(1_000, 7 * DAY_MS),
    default: 600_000,
    doc: 'Time between the end of one cleaning round and the start of the next (rounds never overlap).',
  },
  CLEANER_MAX_UNUSED_MS: {
    schema: integer(0, 3650 * DAY_MS),
    default: 14 * DAY_MS,
    doc: 'The cleaner deletes images whose last use (meta lastUsedAt, refreshed by every copy that reads them) is older than this. Default 14 days.',
  },
  CLEANER_NODE_BUDGET_BYTES: {
    schema: integer(0, Number.MAX_SAFE_INTEGER),
    default: 0,
    doc: 'Per-node cache budget: while a node holds more, the cleaner deletes least recently used images first (never one used within CLEANER_GRACE_MS). 0: no budget.',
  },
  CLEANER_GRACE_MS: {
    schema: integer(0, 3650 * DAY_MS),
    default: 3_600_000,
    doc: 'Images used within this are never evicted for the budget; also the age an image file without meta must reach before it is removed as an orphan.',
  },
  ADMIN_PORT: {
    schema: integer(0, 65_535),
    default: 8080,
    doc: 'Port of the admin HTTP endpoint (0: any free port).',
  },
  ADMIN_HOST: {
    schema: z.string().min(1),
    default: '0.0.0.0',
    doc: 'Address the admin endpoint binds to; forced to 127.0.0.1 when ADMIN_TOKEN is unset.',
  },
  ADMIN_TOKEN: {
    schema: z.string().min(16, 'must be at least 16 characters').optional(),
    default: undefined,
    doc: 'Bearer token for every admin route except health; at least 16 characters. Unset: the endpoint listens on 127.0.0.1 only.',
  },
  LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    doc: 'pino log level.',
  },
} as const;

type Vars = typeof CONFIG_VARIABLES;
export type ConductorConfig = { [K in keyof Vars]: z.output<Vars[K]['schema']> };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Reads and validates the environment; throws a ConfigError naming every bad variable and why. */
export function loadConductorConfig(env: NodeJS.ProcessEnv = process.env): ConductorConfig {
  const problems: string[] = [];
  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(CONFIG_VARIABLES) as [keyof Vars, Vars[keyof Vars]][]) {
    const raw = env[name];
    const fallback = typeof spec.default === 'function' ? spec.default() : spec.default;
    const value = raw === undefined || raw === '' ? fallback : raw;
    if (value === undefined && !(spec.schema as z.ZodType).safeParse(undefined).success) {
      problems.push(`${name}: is required (${spec.doc})`);
      continue;
    }
    const result = (spec.schema as z.ZodType).safeParse(value);
    if (result.success) config[name] = result.data;
    else
      problems.push(
        `${name}=${JSON.stringify(raw)}: ${result.error.issues.map((i) => i.message).join('; ')}`,
      );
  }
  if (problems.length === 0) {
    const c = config as ConductorConfig;
    problems.push(
      ...lockTimingProblems(
        {
          staleMs: c.LOCK_STALE_MS,
          updateMs: c.LOCK_UPDATE_MS,
          safetyMarginMs: c.LOCK_SAFETY_MARGIN_MS,
          pollMs: c.LOCK_POLL_MS,
        },
        {
          staleMs: 'LOCK_STALE_MS',
          updateMs: 'LOCK_UPDATE_MS',
          safetyMarginMs: 'LOCK_SAFETY_MARGIN_MS',
          pollMs: 'LOCK_POLL_MS',
        },
      ),
    );
    const delays = c.RETRY_DELAYS_MS;
    if (delays.some((d, i) => i > 0 && d <= delays[i - 1]!))
      problems.push('RETRY_DELAYS_MS: must be strictly ascending');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ConductorConfig;
}
