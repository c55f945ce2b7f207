import { InvalidFieldError } from '@app/contracts';

/** The largest piece count: a piece index fits 16 bits (4 MiB pieces: images up to 256 GiB). */
export const MAX_PIECES = 65_535;

/** How a fan-out is scheduled. */
export interface FanoutConfig {
  /** Pieces of the image, indexed 0..pieceCount-1 (a whole copy is one piece). */
  pieceCount: number;
  /**
   * Most fetches one destination runs at once. Below it, a destination opens another fetch only while its
   * in-flight fetches' expected rates add up to less than its write cap (several slow holders at once).
   */
  maxFetchesPerDestination: number;
  /** Tie-breaks: the same seed and the same events give the same decisions. */
  seed: number;
}

/** One node as a fan-out starts. */
export interface FanoutNodeInput {
  id: string;
  /** A published, verified image: it holds every piece. */
  complete: boolean;
  /** It wants the image (ignored for a complete node). */
  destination: boolean;
  /** Pieces it already holds verified (a resumed partial copy). */
  pieces?: readonly number[];
  /** Reads it serves at once (NODE_READ_LIMIT). */
  readSlots: number;
  /** Its read cap, bytes per second, shared among the reads it serves. */
  readBps: number;
  /** Its write cap, bytes per second, shared among its fetches. */
  writeBps: number;
}

function wholeNumber(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    throw new InvalidFieldError(field, `must be a whole number from ${min} to ${max}`);
  return value;
}

function rate(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw new InvalidFieldError(field, 'must be a positive finite number');
  return value;
}

/** Checks every field; throws INVALID_REQUEST naming the first bad one. */
export function validateFanoutInput(config: FanoutConfig, nodes: readonly FanoutNodeInput[]): void {
  const pieceCount = wholeNumber('pieceCount', config.pieceCount, 1, MAX_PIECES);
  wholeNumber('maxFetchesPerDestination', config.maxFetchesPerDestination, 1, 1024);
  wholeNumber('seed', config.seed, 0, 0xffff_ffff);
  if (!Array.isArray(nodes) || nodes.length === 0)
    throw new InvalidFieldError('nodes', 'must list at least one node');
  const ids = new Set<string>();
  nodes.forEach((node, i) => {
    const at = `nodes[${i}]`;
    if (typeof node.id !== 'string' || node.id.length === 0)
      throw new InvalidFieldError(`${at}.id`, 'must be a non-empty string');
    if (ids.has(node.id)) throw new InvalidFieldError(`${at}.id`, `duplicate id ${node.id}`);
    ids.add(node.id);
    if (typeof node.complete !== 'boolean')
      throw new InvalidFieldError(`${at}.complete`, 'must be a boolean');
    if (typeof node.destination !== 'boolean')
      throw new InvalidFieldError(`${at}.destination`, 'must be a boolean');
    wholeNumber(`${at}.readSlots`, node.readSlots, 1, 1024);
    rate(`${at}.readBps`, node.readBps);
    rate(`${at}.writeBps`, node.writeBps);
    const seen = new Set<number>();
    for (const piece of node.pieces ?? []) {
      wholeNumber(`${at}.pieces`, piece, 0, pieceCount - 1);
      if (seen.has(piece)) throw new InvalidFieldError(`${at}.pieces`, `piece ${piece} listed twice`);
      seen.add(piece);
    }
  });
}
