/*
 * The state of one fan-out and the one place it changes. Decisions are chooseFetch's (pure); this class
 * applies them and the events that follow: a piece verified, a piece that failed verification, a node lost
 * (killed, its lock lost) or back. Every transition checks its input, so that a fetch from a node that does
 * not hold the piece verified can never start, whatever the caller does.
 */
import { chooseFetch, mayFetch } from './choose-fetch';
import { validateFanoutInput, type FanoutConfig, type FanoutNodeInput } from './fanout-input';
import { IndexSet } from './index-set';
import {
  PIECE_IN_FLIGHT,
  PIECE_MISSING,
  PIECE_VERIFIED,
  type FanoutView,
  type Fetch,
  type NodeView,
} from './fanout-view';

interface NodeState extends NodeView {
  complete: boolean;
  lost: boolean;
  heldCount: number;
  missingCount: number;
  turns: number;
  serving: Fetch[];
  fetching: Fetch[];
  /** Where each missing piece sits in `missing` (valid only for missing pieces not in flight). */
  missingAt: Uint16Array;
}

/** What a piece's end did: the fetches it cancelled (to be re-planned) and whether its destination finished. */
export interface FetchEnd {
  destinationComplete: boolean;
  cancelled: Fetch[];
}

export class Fanout implements FanoutView {
  readonly pieceCount: number;
  readonly maxFetchesPerDestination: number;
  readonly seed: number;
  readonly nodes: NodeState[];
  readonly availability: Int32Array;
  readonly holders: Int32Array[];
  readonly holderCount: Int32Array;
  readonly freePartial: IndexSet;
  readonly freeComplete: IndexSet;
  /** Destinations waiting for a turn, round robin: every one is offered the free slots in turn. */
  private readonly queue: number[] = [];
  private head = 0;
  private readonly queued: Uint8Array;

  constructor(config: FanoutConfig, inputs: readonly FanoutNodeInput[]) {
    validateFanoutInput(config, inputs);
    this.pieceCount = config.pieceCount;
    this.maxFetchesPerDestination = config.maxFetchesPerDestination;
    this.seed = config.seed;
    this.availability = new Int32Array(this.pieceCount);
    this.holders = Array.from({ length: this.pieceCount }, () => new Int32Array(inputs.length));
    this.holderCount = new Int32Array(this.pieceCount);
    this.freePartial = new IndexSet(inputs.length);
    this.freeComplete = new IndexSet(inputs.length);
    this.queued = new Uint8Array(inputs.length);
    this.nodes = inputs.map((input) => this.initialNode(input));
    this.nodes.forEach((node, i) => {
      for (let k = 0; k < node.heldCount; k++) this.addHolder(node.heldList[k]!, i);
      this.refresh(i);
      this.enqueue(i);
    });
  }

  private initialNode(input: FanoutNodeInput): NodeState {
    const p = this.pieceCount;
    const pieces = new Uint8Array(p);
    if (input.complete) pieces.fill(PIECE_VERIFIED);
    else for (const piece of input.pieces ?? []) pieces[piece] = PIECE_VERIFIED;
    const node: NodeState = {
      id: input.id,
      complete: input.complete,
      destination: input.destination && !input.complete,
      lost: false,
      readSlots: input.readSlots,
      readBps: input.readBps,
      writeBps: input.writeBps,
      pieces,
      heldList: new Uint16Array(p),
      heldCount: 0,
      missing: new Uint16Array(p),
      missingAt: new Uint16Array(p),
      missingCount: 0,
      serving: [],
      fetching: [],
      turns: 0,
    };
    for (let piece = 0; piece < p; piece++) {
      if (pieces[piece] === PIECE_VERIFIED) node.heldList[node.heldCount++] = piece;
      else this.addMissing(node, piece);
    }
    if (node.heldCount === p) node.complete = true;
    return node;
  }

  /** Whether every destination holds the whole image verified. */
  get done(): boolean {
    return this.nodes.every((node) => !node.destination || node.complete);
  }

  /**
   * Offers the free read slots to waiting destinations in turn and starts the fetches chooseFetch picks; a
   * destination goes to the back of the line after its turn. Stops when no slot is free, after a whole
   * round of the line without a fetch started, or after `budget` turns.
   */
  assign(budget = Infinity): Fetch[] {
    if (!(budget >= 1)) throw new Error(`assign: a budget of at least one turn, got ${budget}`);
    const started: Fetch[] = [];
    let idleTurns = 0;
    for (
      let t = 0;
      t < budget &&
      idleTurns < this.queue.length - this.head &&
      this.freePartial.size + this.freeComplete.size > 0;
      t++
    ) {
      const d = this.queue[this.head++]!;
      this.queued[d] = 0;
      this.nodes[d]!.turns++;
      const fetch = chooseFetch(this, d);
      if (fetch) {
        this.start(fetch);
        started.push(fetch);
        idleTurns = 0;
      }
      this.enqueue(d);
      // A whole round of the line without a fetch ends the call; one leaving the line is not in the round.
      if (!fetch && this.queued[d]) idleTurns++;
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return started;
  }

  /** Starts a fetch; throws if the source does not hold the piece verified or any slot or bound is exceeded. */
  start(fetch: Fetch): void {
    const dst = this.nodes[fetch.destination];
    const src = this.nodes[fetch.source];
    if (dst === undefined || src === undefined || fetch.source === fetch.destination)
      throw new Error(`fetch ${JSON.stringify(fetch)}: no such pair of nodes`);
    if (src.lost || src.pieces[fetch.piece] !== PIECE_VERIFIED)
      throw new Error(`fetch of piece ${fetch.piece} from ${src.id}: it does not hold it verified`);
    if (src.serving.length >= src.readSlots) throw new Error(`fetch from ${src.id}: no free read slot`);
    if (!mayFetch(this, dst) || dst.pieces[fetch.piece] !== PIECE_MISSING)
      throw new Error(`fetch of piece ${fetch.piece} by ${dst.id}: it may not fetch it now`);
    this.removeMissing(dst, fetch.piece);
    dst.pieces[fetch.piece] = PIECE_IN_FLIGHT;
    dst.fetching.push(fetch);
    src.serving.push(fetch);
    this.refresh(fetch.source);
  }

  /** The piece arrived and its sha256 matched the piece list: the destination holds it and may serve it. */
  verified(fetch: Fetch): FetchEnd {
    this.end(fetch);
    const dst = this.nodes[fetch.destination]!;
    dst.pieces[fetch.piece] = PIECE_VERIFIED;
    dst.heldList[dst.heldCount++] = fetch.piece;
    this.addHolder(fetch.piece, fetch.destination);
    if (dst.heldCount === this.pieceCount) dst.complete = true;
    this.refresh(fetch.destination);
    this.enqueue(fetch.destination);
    return { destinationComplete: dst.complete, cancelled: [] };
  }

  /**
   * The piece's bytes did not match: nothing of it is kept, it is planned again, and its source is no longer
   * trusted (lost: its reads in flight are cancelled and planned again, from other holders).
   */
  failed(fetch: Fetch): FetchEnd {
    this.end(fetch);
    this.returnPiece(fetch);
    return { destinationComplete: false, cancelled: this.lose(fetch.source) };
  }

  /** A node is killed or lost its lock: its reads and fetches in flight are cancelled; its verified pieces stay. */
  lose(index: number): Fetch[] {
    const node = this.node(index);
    if (node.lost) return [];
    node.lost = true;
    for (let k = 0; k < node.heldCount; k++) this.availability[node.heldList[k]!]!--;
    const cancelled = [...node.serving, ...node.fetching];
    for (const fetch of cancelled) {
      this.end(fetch);
      this.returnPiece(fetch);
    }
    this.refresh(index);
    return cancelled;
  }

  /** A lost node is back (resumed under its lock): its verified pieces serve again, it fetches the rest. */
  restore(index: number): void {
    const node = this.node(index);
    if (!node.lost) return;
    node.lost = false;
    for (let k = 0; k < node.heldCount; k++) this.availability[node.heldList[k]!]!++;
    this.refresh(index);
    this.enqueue(index);
  }

  private node(index: number): NodeState {
    const node = this.nodes[index];
    if (node === undefined) throw new Error(`no node ${index}`);
    return node;
  }

  /** Takes a fetch out of both ends' in-flight lists; throws if it is not in flight. */
  private end(fetch: Fetch): void {
    const dst = this.nodes[fetch.destination];
    const src = this.nodes[fetch.source];
    const i = dst?.fetching.indexOf(fetch) ?? -1;
    const j = src?.serving.indexOf(fetch) ?? -1;
    if (i < 0 || j < 0) throw new Error(`fetch ${JSON.stringify(fetch)} is not in flight`);
    dst!.fetching.splice(i, 1);
    src!.serving.splice(j, 1);
    this.refresh(fetch.source);
  }

  /** A piece that will not arrive is missing again at its destination, which waits for a turn. */
  private returnPiece(fetch: Fetch): void {
    const dst = this.nodes[fetch.destination]!;
    dst.pieces[fetch.piece] = PIECE_MISSING;
    this.addMissing(dst, fetch.piece);
    this.enqueue(fetch.destination);
  }

  private addHolder(piece: number, node: number): void {
    this.holders[piece]![this.holderCount[piece]!++] = node;
    this.availability[piece]!++;
  }

  private addMissing(node: NodeState, piece: number): void {
    node.missingAt[piece] = node.missingCount;
    node.missing[node.missingCount++] = piece;
  }

  private removeMissing(node: NodeState, piece: number): void {
    const at = node.missingAt[piece]!;
    const last = node.missing[--node.missingCount]!;
    node.missing[at] = last;
    node.missingAt[last] = at;
  }

  /** Keeps the free-slot sets true to a node's state. */
  private refresh(index: number): void {
    const node = this.nodes[index]!;
    const free = !node.lost && node.serving.length < node.readSlots && node.heldCount > 0;
    this.freeComplete.set(index, free && node.complete);
    this.freePartial.set(index, free && !node.complete);
  }

  private enqueue(index: number): void {
    if (this.queued[index] || !mayFetch(this, this.nodes[index]!)) return;
    this.queued[index] = 1;
    this.queue.push(index);
  }
}
