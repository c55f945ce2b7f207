import * as os from 'node:os';
import { z } from 'zod';
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAYS_MS, cellIdSchema, holderIdSchema } from '@app/contracts';
import { DEFAULT_CONDUCTOR_BEAT_MS, DEFAULT_CONDUCTOR_DEAD_MS } from '@app/image-store';
import { DEFAULT_LOCK_TIMINGS } from '@app/locking';
import { BrokerUrlError, maskBrokerList, parseBrokerUrls } from '@app/messaging';
import { byteRateCapsSchema } from './byte-rate-caps';
import { authHeader, filePath, flag, integer, msList, originUrlTemplate } from './setting-schemas';

/*
 * The conductor's whole configuration, read once from the environment at start
 * (load-conductor-config.ts). Each entry: the variable, its schema, its default and what it means. The
 * configuration table of docs/configuration.md is generated from CONFIG_VARIABLES (npm run docs:config)
 * and a spec checks it is up to date.
 */

const DAY_MS = 86_400_000;

/** CACHE_ROOT_HANG_EXIT_MS when unset, in LOCK_STALE_MS: by then the hung conductor's locks are takeable. */
const HANG_EXIT_STALE_MULTIPLE = 3;

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
    schema: z.string().transform((list, ctx) => {
      try {
        return parseBrokerUrls(list);
      } catch (error) {
        if (!(error instanceof BrokerUrlError)) throw error;
        ctx.addIssue({ code: 'custom', message: list.includes(',') ? error.message : error.problem });
        return z.NEVER;
      }
    }),
    default: 'amqp://guest:guest@127.0.0.1:5672',
    /** Problems show the value with its passwords masked. */
    redact: maskBrokerList,
    fromFile: true,
    doc: 'RabbitMQ connection URL, or several comma-separated (the nodes of a cluster). The first that answers is used; after a loss the next of the list is tried, round and round, with backoff and jitter. Each entry is checked at start. /status shows the one in use (password masked). amqps:// entries use TLS (AMQP_TLS_*).',
  },
  AMQP_TLS_CA_FILE: {
    schema: filePath.optional(),
    default: undefined,
    doc: "PEM file of the CA(s) the brokers' certificates must chain to (amqps://). Unset: Node's built-in CAs. The broker's certificate must also carry the name dialled (the URL's host, or AMQP_TLS_SERVERNAME): that check cannot be turned off.",
  },
  AMQP_TLS_CERT_FILE: {
    schema: filePath.optional(),
    default: undefined,
    doc: 'PEM client certificate (leaf first) for brokers that require one (mutual TLS); needs AMQP_TLS_KEY_FILE. Checked at start: it must parse, match the key and not be expired.',
  },
  AMQP_TLS_KEY_FILE: {
    schema: filePath.optional(),
    default: undefined,
    doc: 'Unencrypted private key of AMQP_TLS_CERT_FILE; refused when every user may read it (mode 0600 or 0640).',
  },
  AMQP_TLS_SERVERNAME: {
    schema: z
      .string()
      .regex(/^[A-Za-z0-9.-]+$/, 'must be a host name')
      .optional(),
    default: undefined,
    doc: "The name the brokers' certificates must carry, when the URLs name them otherwise (e.g. by IP address). Unset: each URL's host.",
  },
  AMQP_AUTH_MECHANISM: {
    schema: z.enum(['PLAIN', 'EXTERNAL'], { error: 'must be PLAIN or EXTERNAL' }),
    default: 'PLAIN',
    doc: "PLAIN: log in with the URL's user and password. EXTERNAL: log in with the client certificate (RabbitMQ's rabbitmq_auth_mechanism_ssl plugin maps it to a user); needs AMQP_TLS_CERT_FILE and amqps:// URLs, and the URLs need no password.",
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
  CACHE_ROOT_CHECK: {
    schema: z.enum(['refuse', 'warn'], { error: 'must be refuse or warn' }),
    default: 'refuse',
    doc: "At start the conductor checks that CACHE_ROOT is the cell's folder (not empty: an empty one is a mount that is not there) and supports the lock timings (rename and fsync, mtime precision, changes visible through a second path within LOCK_SAFETY_MARGIN_MS, NFS attribute cache options) and refuses to start (exit 78, naming what failed and what to change) when it does not. warn: start anyway, with a loud warning; only for a folder you know to be safe.",
  },
  CACHE_ROOT_PROBE_MS: {
    schema: integer(100, 60_000),
    default: 1_000,
    doc: "How often the conductor reads the cell's header key file in CACHE_ROOT, healthy or not: a dead mount's way back is noticed by itself, and a mount whose calls never return is noticed even while nothing else reads it (CACHE_ROOT_HANG_EXIT_MS).",
  },
  CACHE_ROOT_HANG_EXIT_MS: {
    schema: integer(0, 86_400_000).optional(),
    default: undefined,
    doc: `When a read of CACHE_ROOT has had no answer for this long (a FUSE server that never answers, an NFS hard mount of an unreachable server), the conductor logs an error naming the file and the time and ends itself with SIGKILL, so that its supervisor restarts it and the broker redelivers its unacked requests (docs/deployment.md). Unset: ${HANG_EXIT_STALE_MULTIPLE} × LOCK_STALE_MS. 0: never. Otherwise at least LOCK_STALE_MS (a shorter stall leaves the locks valid, and is waited out).`,
  },
  CONDUCTOR_BEAT_MS: {
    schema: integer(200, 600_000),
    default: DEFAULT_CONDUCTOR_BEAT_MS,
    doc: "How often the conductor rewrites its record in CACHE_ROOT/.icc-conductors/ (id, host, version, shared-format versions, last beat): one small write, never a walk of the cell; `icc conductors` and /status list the cell's conductors from these records (docs/upgrades.md).",
  },
  CONDUCTOR_DEAD_MS: {
    schema: integer(1_000, 86_400_000),
    default: DEFAULT_CONDUCTOR_DEAD_MS,
    doc: "A conductor record whose last beat is older than this counts as dead (by the reader's clock): it no longer stops a start, and the conductors remove it. At least 3 × CONDUCTOR_BEAT_MS.",
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
  NODE_READ_BPS: {
    schema: byteRateCapsSchema,
    default: '0',
    doc: "Cap of the bytes per second this conductor's copies read from one source node, all copies of that node together: one rate for every node (e.g. 50Mi; K, M, G are powers of 1000, Ki, Mi, Gi of 1024) or node=rate pairs with *=rate for the rest (e.g. node-a=20M,*=0). 0: no cap. Per conductor: N conductors may read N times this from a node (give each 1/N of the node's budget).",
  },
  NODE_WRITE_BPS: {
    schema: byteRateCapsSchema,
    default: '0',
    doc: "Cap of the bytes per second this conductor's copies write into one destination node; same form and per-conductor meaning as NODE_READ_BPS.",
  },
  BACKGROUND_READ_BPS: {
    schema: byteRateCapsSchema,
    default: '0',
    doc: 'Lower read cap per source node for background (pre-cache) copies together; they count against NODE_READ_BPS too, and get nothing while an interactive copy waits for the same node. Same form as NODE_READ_BPS; 0: only NODE_READ_BPS applies.',
  },
  BACKGROUND_WRITE_BPS: {
    schema: byteRateCapsSchema,
    default: '0',
    doc: 'The write side of BACKGROUND_READ_BPS, per destination node (against NODE_WRITE_BPS).',
  },
  SHARE_PIECES: {
    schema: z.enum(['auto', 'on', 'off'], { error: 'must be auto, on or off' }),
    default: 'auto',
    doc: 'Copies that name no source also read verified pieces from other copies in progress of the same image, and announce their own (CACHE_ROOT/.icc-swarms/), taking a read slot per piece: a fan-out then finishes in about the time of one copy (docs/copies.md, "Reading from copies in progress"). auto: on when NODE_READ_BPS or NODE_WRITE_BPS sets a cap (without caps a copy reads its one source as fast as the disks allow). Only for images whose source has a piece list.',
  },
  CLEANER_ENABLED: {
    schema: flag,
    default: 'false',
    doc: 'Run the cache cleaner on every node of the cell each CLEANER_INTERVAL_MS (one round per interval for the whole cell, whichever conductor runs it). Off by default: nothing is ever deleted unless this is set.',
  },
  LEFTOVER_SWEEP_MS: {
    schema: integer(0, 7 * DAY_MS).refine(
      (ms) => ms === 0 || ms >= 1_000,
      'must be 0 (off) or at least 1000',
    ),
    default: 60_000,
    doc: "Time between rounds of the leftover sweep, which collects lock entries and partial files of dead attempts that no later copy of the same image comes for, each under that image's exclusive lock, once they stayed unchanged for LOCK_STALE_MS, and removes lock key folders that stayed unchanged that long. One round per interval for the whole cell, whichever conductor runs it. 0 turns it off.",
  },
  RESUMABLE_KEEP_MS: {
    schema: integer(0, 7 * DAY_MS),
    default: 30 * 60_000,
    doc: "How long the leftover sweep leaves a dead attempt's resumable partial copy (its record verified some bytes) unchanged for a later attempt to continue, instead of LOCK_STALE_MS: a killed copy's redelivered request then goes on from its last checkpoint even when the sweep takes the dead holder's lock first. Costs the partial's disk space for that long. 0 or at most LOCK_STALE_MS: no longer than other leftovers.",
  },
  JOB_KEEP_MS: {
    schema: integer(0, 3650 * DAY_MS).refine(
      (ms) => ms === 0 || ms >= DAY_MS,
      'must be 0 (keep for ever) or at least a day (86400000)',
    ),
    default: 7 * DAY_MS,
    doc: "How long a finished pre-cache or purge job's record (icc job status) and a copy request's cancel marker stay in the shared folder; every conductor removes older ones once an hour. At least a day, since ages are judged by mtimes against each host's clock. 0 keeps them for ever.",
  },
  CLEANER_INTERVAL_MS: {
    schema: integer(1_000, 7 * DAY_MS),
    default: 600_000,
    doc: 'Time between the end of one cleaning round and the start of the next (rounds never overlap).',
  },
  CLEANER_MAX_UNUSED_MS: {
    schema: integer(0, 3650 * DAY_MS),
    default: 14 * DAY_MS,
    doc: 'The cleaner deletes images whose last use (the later of meta lastUsedAt and the mtime of <node>/used/<imageId>, refreshed by every copy that reads them) is older than this. Default 14 days.',
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
  ORIGIN_URL: {
    schema: originUrlTemplate.optional(),
    default: undefined,
    doc: "The cell's origin: an http(s) URL template with {imageId}, e.g. https://glance.example/v2/images/{imageId}/file. A copy for which no node holds a verified copy (and no source is named) is downloaded from it into the destination, one download per image cell-wide. Unset: no origin (such a copy fails SOURCE_MISSING).",
  },
  ORIGIN_AUTH_HEADER: {
    schema: authHeader.optional(),
    default: undefined,
    secret: true,
    fromFile: true,
    doc: 'One header sent with every origin request, as `Name: value` (e.g. `X-Auth-Token: …`). A secret: logs and /status show only its name.',
  },
  ORIGIN_CHECKSUM_HEADER: {
    schema: z.string().regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name'),
    default: 'X-Checksum-Sha256',
    doc: "The origin's response header with the image's sha256 (64 hex digits; a malformed one fails ORIGIN_BAD_RESPONSE). The download is verified against the request's sha256 when given, else this header; with neither, nothing is downloaded.",
  },
  ORIGIN_ATTEMPTS: {
    schema: integer(1, 100),
    default: 5,
    doc: 'Connections one origin download may use: a dropped connection is resumed from the last byte received (HTTP Range), a 5xx or a refused connection retried, with a growing pause; then a retryable ORIGIN_UNAVAILABLE.',
  },
  ORIGIN_IDLE_TIMEOUT_MS: {
    schema: integer(100, 3_600_000),
    default: 30_000,
    doc: 'An origin connection that delivers no byte for this long counts as dropped (and is resumed).',
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
    // A token refused for being short is still someone's real token: never echoed.
    secret: true,
    fromFile: true,
    doc: 'Bearer token for every admin route except health; at least 16 characters. Unset: the endpoint listens on 127.0.0.1 only.',
  },
  ADMIN_TLS_CERT_FILE: {
    schema: filePath.optional(),
    default: undefined,
    doc: 'PEM certificate (leaf first) of the admin endpoint: with ADMIN_TLS_KEY_FILE it speaks HTTPS only. Both unset: plain HTTP. Both files are read again on SIGHUP (a renewed certificate is served to new connections; work goes on); a bad pair is logged and the old one kept.',
  },
  ADMIN_TLS_KEY_FILE: {
    schema: filePath.optional(),
    default: undefined,
    doc: 'Unencrypted private key of ADMIN_TLS_CERT_FILE; refused when every user may read it.',
  },
  LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    doc: 'pino log level.',
  },
} as const;

type Vars = typeof CONFIG_VARIABLES;
export type ConductorConfig = { [K in keyof Vars]: z.output<Vars[K]['schema']> };

/** How long a read of CACHE_ROOT may go unanswered before the conductor leaves (0: never). */
export function cacheRootHangExitMs(
  c: Pick<ConductorConfig, 'CACHE_ROOT_HANG_EXIT_MS' | 'LOCK_STALE_MS'>,
): number {
  return c.CACHE_ROOT_HANG_EXIT_MS ?? HANG_EXIT_STALE_MULTIPLE * c.LOCK_STALE_MS;
}
