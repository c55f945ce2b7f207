import { createHash } from 'node:crypto';
import { type ReasonCode, REASON_CODES } from '@app/contracts';
import type { Rng } from './campaign-kit';

/*
 * Generators of malformed and hostile input for campaign 5. Everything is drawn from a seeded Rng, so a
 * seed gives the same messages, HTTP requests and command lines again.
 */

/** One AMQP message to publish as is. */
export interface FuzzMessage {
  /** Index in the run, also sent as header x-campaign-case (unless `bare`). */
  index: number;
  kind: string;
  body: Buffer;
  properties: {
    contentType?: string;
    messageId?: string;
    correlationId?: string;
    replyTo?: string;
    headers?: Record<string, unknown>;
  };
  /** No properties at all, not even the campaign header: recognised by the sha256 of its body. */
  bare: boolean;
  /** Reasons the dead letter may carry (exactly one dead letter is expected). */
  expectedReasons: ReasonCode[];
}

export const CASE_HEADER = 'x-campaign-case';

export function bodyKey(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** Ids that are not safe names, by construction: each has a character outside [A-Za-z0-9._-], '..', or a bad start. */
export const HOSTILE_IDS: readonly string[] = [
  '..',
  '../etc',
  '../../../../etc/passwd',
  'a/../../b',
  '/etc/passwd',
  'node-b/../../x',
  'a\\..\\b',
  '.hidden',
  '-starts-with-dash',
  '_underscore-start',
  '',
  ' ',
  'img with space',
  'img\ttab',
  'img\nnewline',
  'a\u0000b',
  '\u0000',
  '．．',
  '．．／etc',
  '\u2024\u2024',
  '\u2024\u2024/etc',
  'img\u2215..\u2215x',
  '\u202Egpj.exe',
  'node\u200Bb',
  '\uFEFFnode-b',
  'n\u043Ede-b',
  'ubuntu\u0430.qcow2',
  'e\u0301.img',
  '%2e%2e%2fetc',
  '..%2f..%2f',
  'img.meta.json',
  'x'.repeat(129),
  'n'.repeat(65),
  '😀.img',
  '\uD800',
  'a..b',
  'a:b',
  'a*b',
  '$(reboot)',
  '`id`',
  "'; DROP TABLE images; --",
];

// No strings: a string of the right shape ('1', 'null') is a valid id, and would name a real node or image.
const WRONG_TYPES: readonly unknown[] = [
  0,
  -1,
  1.5,
  true,
  false,
  null,
  [],
  ['node-b'],
  {},
  { $ne: 1 },
  1e308,
];
const WRONG_CONTENT_TYPES: readonly string[] = [
  'text/plain',
  'application/xml',
  'application/octet-stream',
  'application/x-json',
  'json',
  'application/json-patch+json',
  'text/json',
  'multipart/form-data; boundary=x',
];

/**
 * The protocol's safe-name rule (docs/protocol.md), written here from the document: the fuzzer uses it
 * only to make sure each hostile id it sends is one the rule refuses for that field.
 */
export function isSafeName(
  value: string,
  field: 'requestId' | 'imageId' | 'destination' | 'source',
): boolean {
  const max = field === 'destination' || field === 'source' ? 64 : 128;
  if (
    value.length < 1 ||
    value.length > max ||
    !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value) ||
    value.includes('..')
  )
    return false;
  return !(field === 'imageId' && value.endsWith('.meta.json'));
}

/** A hostile id the safe-name rule refuses for `field`; `argv`: none with NUL (a command line cannot hold one). */
function hostileId(
  rng: Rng,
  field: 'requestId' | 'imageId' | 'destination' | 'source',
  argv = false,
): string {
  for (;;) {
    const id = rng.pick(HOSTILE_IDS);
    if (!isSafeName(id, field) && !(argv && id.includes('\u0000'))) return id;
  }
}
const BAD_SHA256: readonly string[] = [
  'A'.repeat(64),
  'a'.repeat(63),
  'a'.repeat(65),
  'g'.repeat(64),
  '',
  ' '.repeat(64),
  'é'.repeat(64),
];
const BAD_SIZES: readonly unknown[] = [
  -1,
  1.5,
  '12',
  Number.POSITIVE_INFINITY,
  Number.MAX_SAFE_INTEGER + 2,
  [],
  null,
  true,
];
const BAD_DEADLINES: readonly unknown[] = [
  'tomorrow',
  '2030-01-01T00:00:00',
  '2030-13-01T00:00:00Z',
  1893456000,
  '',
  null,
];

export interface MessageContext {
  nodes: string[];
  /** Image ids valid traffic uses; hostile messages never name a real (node, image) pair with a valid shape. */
  images: string[];
  validRequest: (requestId: string) => Record<string, unknown>;
}

/**
 * `count` bad messages, every one of which must be refused: each carries at least one definite violation
 * (not JSON, not an object, too big, a wrong type, an unknown or missing field, a hostile id, a wrong
 * content type, a version other than 1, a source equal to the destination, a past deadline, an image no
 * node holds). Bodies are unique (a nonce), so even bare ones can be told apart in the dead-letter queue.
 */
export function generateBadMessages(
  rng: Rng,
  count: number,
  ctx: MessageContext,
  firstIndex = 0,
): FuzzMessage[] {
  const out: FuzzMessage[] = [];
  const seen = new Set<string>();
  const makers = messageMakers(ctx);
  while (out.length < count) {
    const index = firstIndex + out.length;
    const nonce = `fz${index}-${rng.hex(6)}`;
    const [kind, make] = rng.pick(makers);
    const made = make(rng, nonce);
    if (seen.has(bodyKey(made.body))) continue;
    seen.add(bodyKey(made.body));
    const bare = made.bare ?? rng.chance(0.05);
    const properties = bare
      ? {}
      : {
          contentType: 'contentType' in made ? made.contentType : 'application/json',
          messageId: rng.chance(0.8) ? nonce : undefined,
          correlationId: rng.chance(0.5) ? nonce : undefined,
          headers: { [CASE_HEADER]: index, ...(made.headers ?? {}) },
        };
    out.push({ index, kind, body: made.body, properties, bare, expectedReasons: made.reasons });
  }
  return out;
}

type Made = {
  body: Buffer;
  reasons: ReasonCode[];
  contentType?: string;
  headers?: Record<string, unknown>;
  bare?: boolean;
};
type Maker = readonly [string, (rng: Rng, nonce: string) => Made];

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const INVALID: ReasonCode[] = ['INVALID_REQUEST'];

/** What the conductor must say about an object body: `v` other than 1 is checked before anything else. */
function reasonsFor(body: Record<string, unknown>): ReasonCode[] {
  return 'v' in body && body.v !== 1 ? ['UNSUPPORTED_VERSION'] : INVALID;
}

function messageMakers(ctx: MessageContext): Maker[] {
  const valid = (nonce: string) => ctx.validRequest(nonce);
  return [
    [
      'fuzzed-json',
      (rng, nonce) => {
        // Random edits of a valid request's text until it no longer parses as JSON.
        let text = JSON.stringify(valid(nonce));
        for (let tries = 0; tries < 20; tries++) {
          text = mutateText(rng, text);
          if (!parses(text)) break;
        }
        if (parses(text)) text += '}{';
        return { body: Buffer.from(text), reasons: INVALID };
      },
    ],
    [
      'wrong-type',
      (rng, nonce) => {
        const body = valid(nonce);
        const field = rng.pick([
          'v',
          'imageId',
          'destination',
          'source',
          'sha256',
          'size',
          'deadline',
          'requestId',
        ]);
        // A whole number >= 0 is a valid size, and 1 a valid version: never drawn for those.
        body[field] = rng.pick(
          WRONG_TYPES.filter((t) => !(field === 'size' && Number.isSafeInteger(t) && (t as number) >= 0)),
        );
        if (field === 'requestId') body.note = nonce; // the nonce must stay in the body
        return { body: json(body), reasons: reasonsFor(body) };
      },
    ],
    [
      'hostile-id',
      (rng, nonce) => {
        const body = valid(nonce);
        const field = rng.pick(['imageId', 'destination', 'source', 'requestId'] as const);
        body[field] = hostileId(rng, field);
        if (field === 'requestId') body.sha256 = createHash('sha256').update(nonce).digest('hex');
        return { body: json(body), reasons: INVALID };
      },
    ],
    [
      'hostile-id-raw-bytes',
      (rng, nonce) => {
        // Bytes JSON.stringify would never write: an overlong UTF-8 '.', a lone continuation byte, a raw NUL.
        const evil = rng.pick([
          Buffer.from([0xc0, 0xae, 0xc0, 0xae, 0x2f]),
          Buffer.from([0x80, 0x2e, 0x2e]),
          Buffer.from([0x61, 0x00, 0x62]),
          Buffer.from([0xef, 0xbc, 0x8e, 0xef, 0xbc, 0x8e]),
        ]);
        const [before, after] = JSON.stringify({ ...valid(nonce), imageId: '@@' }).split('@@') as [
          string,
          string,
        ];
        return { body: Buffer.concat([Buffer.from(before), evil, Buffer.from(after)]), reasons: INVALID };
      },
    ],
    [
      'bad-value',
      (rng, nonce) => {
        const body = valid(nonce);
        const which = rng.pick([
          'sha256',
          'size',
          'deadline',
          'same-node',
          'unknown-field',
          'proto',
          'meta-suffix',
          'missing',
        ]);
        if (which === 'sha256') body.sha256 = rng.pick(BAD_SHA256);
        if (which === 'size') body.size = rng.pick(BAD_SIZES);
        if (which === 'deadline') body.deadline = rng.pick(BAD_DEADLINES);
        if (which === 'same-node') body.source = body.destination;
        if (which === 'unknown-field')
          body[rng.pick(['weight', 'path', 'exec', 'Source', 'imageid', ''])] = rng.pick(['x', 1, null]);
        if (which === 'meta-suffix') body.imageId = 'ubuntu.meta.json';
        if (which === 'missing') delete body[rng.pick(['v', 'requestId', 'imageId', 'destination'])];
        if (which === 'missing' && !('requestId' in body))
          body.sha256 = createHash('sha256').update(nonce).digest('hex');
        if (which === 'proto') {
          const text = JSON.stringify(body).replace(/^\{/, `{"__proto__":{"polluted":"${nonce}"},`);
          return { body: Buffer.from(text), reasons: INVALID };
        }
        // With v absent (deleted), the other fields still fail: v is required.
        return { body: json(body), reasons: reasonsFor(body) };
      },
    ],
    [
      'duplicate-keys',
      (rng, nonce) => {
        const text = JSON.stringify(valid(nonce)).replace(
          /\}$/,
          `,"destination":${JSON.stringify(hostileId(rng, 'destination'))}}`,
        );
        return { body: Buffer.from(text), reasons: INVALID };
      },
    ],
    [
      'version',
      (rng, nonce) => {
        const body = { ...valid(nonce), v: rng.pick([0, 2, 99, -1, 1.0001, '1', '2']) };
        return { body: json(body), reasons: ['UNSUPPORTED_VERSION'] };
      },
    ],
    [
      'not-an-object',
      (rng, nonce) => ({
        body: Buffer.from(
          rng.pick([
            `[${JSON.stringify(nonce)}]`,
            `${JSON.stringify(nonce)}`,
            `"${nonce}"`,
            `[1,2,"${nonce}"]`,
          ]),
        ),
        reasons: INVALID,
      }),
    ],
    [
      'scalar-json',
      (rng, nonce) => ({
        body: Buffer.from(
          `${rng.pick(['null', 'true', '42', '-0', '1e999'])} ${' '.repeat(rng.int(0, 3))}/*${nonce}*/`,
        ),
        reasons: INVALID,
      }),
    ],
    [
      'huge-field',
      (rng, nonce) => {
        const body = valid(nonce);
        body[rng.pick(['imageId', 'note', 'destination', 'requestId'])] = 'x'.repeat(
          rng.pick([200, 16 * 1024, 64 * 1024, 1024 * 1024]),
        );
        if (!('note' in body)) body.sha256 = createHash('sha256').update(nonce).digest('hex');
        return { body: json(body), reasons: INVALID };
      },
    ],
    [
      'deep-nesting',
      (rng, nonce) => {
        const depth = rng.pick([1_000, 7_000, 100_000]);
        return {
          body: Buffer.from(`{"v":1,"requestId":"${nonce}","x":${'['.repeat(depth)}${']'.repeat(depth)}}`),
          reasons: INVALID,
        };
      },
    ],
    [
      'wrong-content-type',
      // Never bare: without its properties the body is a valid request.
      (rng, nonce) => ({
        body: json(valid(nonce)),
        reasons: INVALID,
        contentType: rng.pick(WRONG_CONTENT_TYPES),
        bare: false,
      }),
    ],
    [
      'binary-garbage',
      (rng, nonce) => ({
        body: Buffer.concat([rng.bytes(rng.int(1, 4096)), Buffer.from(nonce)]),
        reasons: INVALID,
        contentType: rng.pick(['application/json', undefined as unknown as string]),
      }),
    ],
    [
      'empty-body',
      (rng, nonce) => ({
        body: Buffer.from(rng.pick(['', ' ', '\n', '{}', '{ }'])),
        reasons: INVALID,
        headers: { nonce },
      }),
    ],
    [
      'hostile-headers',
      (rng, nonce) => {
        const body = { ...valid(nonce), [rng.pick(['weight', 'path'])]: 1 };
        const headers = rng.pick([
          { 'x-icc-attempt': 'abc' },
          { 'x-icc-attempt': 999 },
          { 'x-icc-attempt': -5 },
          { 'x-icc-first-seen': 'not a date' },
          { 'x-icc-reason': 'COMPLETED' },
          { 'x-death': [{ count: 'x' }] },
          { 'x-delivery-count': 1e9 },
        ]);
        return { body: json(body), reasons: INVALID, headers, bare: false };
      },
    ],
    [
      'no-such-image',
      (rng, nonce) => {
        // Well formed, but no node holds the image (or the named source does not): SOURCE_MISSING.
        const body: Record<string, unknown> = { ...valid(nonce), imageId: `missing-${nonce}.img` };
        if (rng.chance(0.5)) delete body.source;
        return { body: json(body), reasons: ['SOURCE_MISSING'] };
      },
    ],
    [
      'past-deadline',
      (rng, nonce) => ({
        body: json({
          ...valid(nonce),
          deadline: rng.pick(['2001-01-01T00:00:00Z', '1970-01-01T00:00:00+02:00']),
        }),
        reasons: ['DEADLINE_EXCEEDED'],
      }),
    ],
    [
      'bare-garbage',
      (rng, nonce) => ({
        body: Buffer.concat([Buffer.from(nonce), rng.bytes(rng.int(0, 512))]),
        reasons: INVALID,
        bare: true,
      }),
    ],
  ];
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** One random edit of a text: delete, insert, replace, truncate or duplicate a slice. */
function mutateText(rng: Rng, text: string): string {
  const at = rng.int(0, Math.max(0, text.length - 1));
  const junk = rng.pick([
    '{',
    '}',
    '"',
    ':',
    ',',
    '[',
    ']',
    '\\',
    '\u0000',
    'NaN',
    'undefined',
    '\u202e',
    "'",
    '\n',
  ]);
  switch (rng.int(0, 4)) {
    case 0:
      return text.slice(0, at) + text.slice(at + 1);
    case 1:
      return text.slice(0, at) + junk + text.slice(at);
    case 2:
      return text.slice(0, at) + junk + text.slice(at + 1);
    case 3:
      return text.slice(0, at);
    default:
      return text.slice(0, at) + text.slice(at, at + rng.int(1, 20)) + text.slice(at);
  }
}

export function isKnownReason(value: unknown): value is ReasonCode {
  return typeof value === 'string' && value in REASON_CODES;
}

/** One raw HTTP request for the admin endpoint fuzz. */
export interface FuzzHttpRequest {
  index: number;
  kind: string;
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body?: string;
  /** The bearer token is presented, exactly right. */
  authorized: boolean;
  /** Exact status the oracle expects, when it can say (else: any non-5xx). */
  expect?: number;
}

const PROTECTED = ['/status', '/locks', '/metrics'] as const;
const OPEN = ['/', '/health/live', '/health/ready'] as const;
const QUERY_JUNK = [
  '%',
  '%zz',
  '%00',
  '%2e%2e%2f',
  '%ff%fe',
  '&&&',
  '=',
  '==x',
  'a=1&a=2',
  '%E2%80%AE',
  '\u202e',
  '?',
  '#frag',
  '[]=1',
  'x[y]=z',
  'node[]=a',
  'node[a]=b',
  'image[$ne]=1',
];
const PATH_JUNK = [
  '/..',
  '/../status',
  '/%2e%2e/status',
  '//status',
  '/status/',
  '/STATUS',
  '/Status',
  '/status%00',
  '/status%2f',
  '/locks/../metrics',
  '/%ff',
  '/%',
  '/\u202e',
  '/status;x',
  '/status/..',
  '/./status',
  '/health/../status',
  '/health/ready/../../metrics',
  '/index.html',
  '/.env',
  '/admin',
  '/favicon.ico',
  '/status.json',
  '/metrics/',
  '/%2Fstatus',
  '/😀',
  '/health',
  '/health/',
  '/HEALTH/LIVE',
];

/**
 * `count` HTTP requests against the admin routes: exact routes with and without the token, /locks with
 * good and bad parameters, fuzzed paths, queries, methods and headers (sent over a raw socket, so
 * nothing is cleaned up on the way).
 */
export function generateHttpRequests(rng: Rng, count: number, token: string): FuzzHttpRequest[] {
  const out: FuzzHttpRequest[] = [];
  const auth = (kind: 'right' | 'none' | 'wrong'): Array<[string, string]> =>
    kind === 'right'
      ? [['Authorization', `Bearer ${token}`]]
      : kind === 'none'
        ? []
        : [
            [
              'Authorization',
              rng.pick([
                `Bearer ${token}x`,
                `Bearer ${token.slice(1)}`,
                `Basic ${Buffer.from(`admin:${token}`).toString('base64')}`,
                'Bearer',
                'Bearer ',
                `Bearer\t${token}\tx`,
                `${token}`,
                `Bearer ${'A'.repeat(8000)}`,
                'Bearer \u00ff\u00fe',
                `Bearer ${token.toUpperCase()}x`,
              ]),
            ],
          ];
  while (out.length < count) {
    const index = out.length;
    const kind = rng.weighted([
      ['protected-no-token', 3],
      ['protected-wrong-token', 3],
      ['locks-query', 4],
      ['status-metrics-query', 1],
      ['open-route', 1],
      ['fuzzed-path', 3],
      ['fuzzed-method', 1],
      ['fuzzed-headers', 2],
    ] as const);
    if (kind === 'protected-no-token' || kind === 'protected-wrong-token') {
      const route = rng.pick(PROTECTED);
      const query = rng.chance(0.5) ? `?${rng.pick(QUERY_JUNK)}` : '';
      out.push({
        index,
        kind,
        method: 'GET',
        target: route + query,
        headers: auth(kind === 'protected-no-token' ? 'none' : 'wrong'),
        authorized: false,
        expect: 401,
      });
    } else if (kind === 'locks-query') {
      const { query, valid } = locksQuery(rng);
      out.push({
        index,
        kind,
        method: 'GET',
        target: `/locks${query}`,
        headers: auth('right'),
        authorized: true,
        expect: valid ? 200 : 400,
      });
    } else if (kind === 'status-metrics-query') {
      out.push({
        index,
        kind,
        method: 'GET',
        target: `${rng.pick(['/status', '/metrics'])}?${rng.pick(QUERY_JUNK)}`,
        headers: auth('right'),
        authorized: true,
      });
    } else if (kind === 'open-route') {
      out.push({
        index,
        kind,
        method: 'GET',
        target: rng.pick(OPEN) + (rng.chance(0.5) ? `?${rng.pick(QUERY_JUNK)}` : ''),
        headers: auth(rng.pick(['right', 'none', 'wrong'])),
        authorized: false,
        expect: 200,
      });
    } else if (kind === 'fuzzed-path') {
      const withToken = rng.chance(0.5);
      const target = rng.chance(0.8) ? rng.pick(PATH_JUNK) : `/${'a/'.repeat(rng.int(1, 3000))}`;
      out.push({
        index,
        kind,
        method: 'GET',
        target,
        headers: auth(withToken ? 'right' : 'none'),
        authorized: withToken,
      });
    } else if (kind === 'fuzzed-method') {
      const withToken = rng.chance(0.5);
      out.push({
        index,
        kind,
        method: rng.pick([
          'POST',
          'PUT',
          'DELETE',
          'PATCH',
          'OPTIONS',
          'HEAD',
          'TRACE',
          'FOO',
          'CONNECT',
          'PROPFIND',
        ]),
        target: rng.pick([...PROTECTED, ...OPEN]),
        headers: [...auth(withToken ? 'right' : 'none'), ['Content-Type', 'application/json']],
        body: '{"x":1}',
        authorized: withToken,
      });
    } else {
      const withToken = rng.chance(0.5);
      const extra: Array<[string, string]> = rng.pick([
        [
          ['Authorization', `Bearer ${token}`],
          ['Authorization', 'Bearer nope'],
        ],
        [['Accept', '*/*'.repeat(2000)]],
        [['Content-Length', '5']],
        [['X-Forwarded-For', '127.0.0.1, ../../etc']],
        [['Host', '']],
        [['Cookie', 'token=' + token]],
        [['Accept-Encoding', 'gzip, br, zstd, ../']],
        [['Transfer-Encoding', 'chunked']],
        [['X-Long', 'x'.repeat(20_000)]],
      ] as Array<Array<[string, string]>>);
      const headers = [...auth(withToken ? 'right' : 'none'), ...extra];
      // Node keeps the first of repeated Authorization headers: that one decides.
      const firstAuth = headers.find(([k]) => k === 'Authorization');
      out.push({
        index,
        kind,
        method: 'GET',
        target: rng.pick([...PROTECTED, '/locks?node=node-a']),
        headers,
        authorized: firstAuth?.[1] === `Bearer ${token}`,
      });
    }
  }
  // A request line with raw bytes outside printable ASCII is refused by Node's HTTP parser (400) before
  // any route sees it: no route-level expectation for those.
  for (const r of out) if (/[^\x21-\x7e]/.test(r.target)) r.expect = undefined;
  return out;
}

/** A /locks query and whether the documented rules accept it (node and image: safe names, once each, nothing else). */
function locksQuery(rng: Rng): { query: string; valid: boolean } {
  const params: string[] = [];
  let valid = true;
  for (const name of ['node', 'image'] as const) {
    const roll = rng.int(0, 4);
    if (roll === 0) continue;
    if (roll === 1)
      params.push(
        `${name}=${rng.pick(name === 'node' ? ['node-a', 'node-b', 'n1'] : ['img-0.raw', 'ubuntu.qcow2', 'a'])}`,
      );
    else {
      const hostile = rng.pick(HOSTILE_IDS);
      const field = name === 'node' ? 'destination' : 'imageId';
      params.push(`${name}=${percentEncode(hostile)}`);
      if (!isSafeName(hostile, field)) valid = false;
    }
    if (rng.chance(0.1)) {
      params.push(`${name}=node-a`); // given twice: refused
      valid = false;
    }
  }
  if (rng.chance(0.2)) {
    params.push(`${rng.pick(['limit', 'nodes', 'x', 'Node', '__proto__'])}=1`);
    valid = false;
  }
  rng.shuffle(params);
  return { query: params.length > 0 ? `?${params.join('&')}` : '', valid };
}

/** encodeURIComponent, or every UTF-8 byte percent-encoded when it refuses (a lone surrogate). */
function percentEncode(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return [...Buffer.from(value, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  }
}

/** One command line for `icc copy`, and what the oracle knows about it. */
export interface FuzzArgv {
  index: number;
  args: string[];
  /** Exit codes the documentation allows for it (always a subset of 0, 2, 3, 4, 5). */
  allowed: number[];
  note: string;
}

/**
 * `count` command lines for `icc copy`: each flag either right, missing, hostile or malformed. A valid
 * line names a real cell, image and nodes and waits at most a few seconds.
 */
export function generateCliArgs(
  rng: Rng,
  count: number,
  ctx: {
    cellId: string;
    amqpUrl: string;
    image: string;
    source: string;
    destinations: string[];
    sha256: string;
    size: number;
  },
): FuzzArgv[] {
  const out: FuzzArgv[] = [];
  while (out.length < count) {
    const index = out.length;
    const notes: string[] = [];
    let usage = false;
    let unreachable = false;
    let failed = false;
    const args: string[] = ['copy'];
    const flag = (name: string, good: string, bad: () => string): void => {
      const roll = rng.int(0, 11);
      if (roll < 8) args.push(name, good);
      else if (roll < 10) {
        args.push(name, bad());
        notes.push(`${name} bad`);
        usage = true;
      } else if (roll === 10) notes.push(`${name} missing`);
      else args.push(`${name}=${good}`);
    };
    // The image: a positional argument.
    const imageRoll = rng.int(0, 11);
    if (imageRoll < 9) args.push(ctx.image);
    else if (imageRoll < 11) {
      const hostile = hostileId(rng, 'imageId', true);
      args.push(hostile.startsWith('-') ? `--${hostile}` : hostile);
      usage = true;
      notes.push('image hostile');
    } else {
      args.push(`no-such-${rng.hex(4)}.img`);
      failed = true;
      notes.push('image absent');
    }
    flag('--to', rng.pick(ctx.destinations), () => hostileId(rng, 'destination', true));
    if (!args.includes('--to') && !args.some((a) => a.startsWith('--to='))) usage = true;
    if (rng.chance(0.4)) flag('--from', ctx.source, () => hostileId(rng, 'source', true));
    if (rng.chance(0.3))
      flag('--sha256', ctx.sha256, () => rng.pick(BAD_SHA256.filter((s) => s !== 'A'.repeat(64))) || 'zz');
    if (rng.chance(0.3))
      flag('--size', String(ctx.size), () =>
        rng.pick(['-1', '1.5', 'abc', '1e3', '99999999999999999999', '', '0x10']),
      );
    const cellRoll = rng.int(0, 19);
    if (cellRoll < 16) args.push('--cell', ctx.cellId);
    else if (cellRoll === 16) {
      args.push('--cell', `nocell-${rng.hex(6)}`);
      unreachable = true;
      notes.push('cell without queue');
    } else if (cellRoll < 19) {
      args.push('--cell', hostileId(rng, 'destination', true));
      usage = true;
      notes.push('cell hostile');
    } else {
      usage = true; // no --cell and no CELL_ID
      notes.push('cell missing');
    }
    const urlRoll = rng.int(0, 19);
    if (urlRoll < 16) args.push('--amqp-url', ctx.amqpUrl);
    else if (urlRoll < 18) {
      args.push(
        '--amqp-url',
        rng.pick([
          'amqp://guest:guest@127.0.0.1:1',
          'amqp://guest:wrong@127.0.0.1:5672',
          'amqp://nohost.invalid:5672',
        ]),
      );
      unreachable = true;
      notes.push('broker unreachable');
    } else {
      args.push(
        '--amqp-url',
        rng.pick(['not a url', 'http://127.0.0.1:5672', 'amqp://', '', '::::', 'amqp://[::1']),
      );
      usage = true;
      notes.push('url malformed');
    }
    if (rng.chance(0.5)) {
      args.push('--wait');
      const timeoutRoll = rng.int(0, 5);
      if (timeoutRoll < 4) args.push('--timeout', String(rng.int(2, 6)));
      else {
        args.push('--timeout', rng.pick(['0', '-1', 'abc', '1e9', '', '5s']));
        notes.push('timeout odd');
      }
    }
    if (rng.chance(0.3)) args.push('--json');
    if (rng.chance(0.2)) {
      if (rng.chance(0.5)) args.push('--request-id', `cli-${index}-${rng.hex(6)}`);
      else {
        args.push('--request-id', hostileId(rng, 'requestId', true));
        usage = true;
        notes.push('request id hostile');
      }
    }
    if (rng.chance(0.1)) {
      args.splice(
        rng.int(1, args.length),
        0,
        rng.pick(['--frobnicate', '-x', 'extra-positional', '--', '--to', '-']),
      );
      notes.push('junk inserted');
    }
    // The oracle: without surprises, a valid line ends 0 (published, or completed within the wait), a
    // missing image 3, an unreachable broker or cell 5, a bad flag 2; timeouts may always end 4 when waiting.
    const waits = args.includes('--wait');
    let allowed: number[];
    if (notes.includes('junk inserted') || notes.includes('timeout odd')) allowed = [0, 2, 3, 4, 5];
    else if (usage) allowed = [2];
    else if (unreachable) allowed = [5];
    else if (failed) allowed = waits ? [3, 4] : [0];
    else allowed = waits ? [0, 4] : [0];
    out.push({ index, args, allowed, note: notes.join(', ') || 'valid' });
  }
  return out;
}
