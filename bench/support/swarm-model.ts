/*
 * The engine of bench/swarm-simulation.ts: N destination copies of one image run the per-copy rules of
 * real copies (libs/image-store: pieceTurn for each holder's next step, the piece plan, choiceOffset, the
 * look's period and peer count) against a simulated clock and fluid bandwidth. Event-driven: the events
 * are a piece read that ends and a copy's look; time is continuous in between.
 *
 * What stands for what (one conductor, as in bench/fanout-one-copy.ts; its swarm board is the view):
 * - Node 0 is the origin (a published image, every piece). A copy's holders are the origin and up to
 *   MAX_PEERS_PER_COPY other copies, chosen at random at its start (every copy joins at time 0, so its first
 *   look finds them all; a copy that completes stays a holder with every piece, as its published image).
 *   With `endGame`, each look then joins up to END_GAME_PEERS more copies in progress that hold a piece it
 *   misses and none of its peers holds (bench/support/swarm-end-game.ts), as the real look does.
 * - The verified source's seed rule (pieceTurn's `seedOnly`): the pieces a peer of this copy holds or any
 *   copy is reading; with seedRule `board`, also every piece any copy in progress holds or reads.
 * - A holder's loop is woken as the real one is: by its own copy's changes (a read of the copy that ends,
 *   its look every SWARM_POLL_MS from a random phase) and, when it waits for a read slot, by a slot of
 *   that node given back (the real wake is any slot of the conductor; a slot elsewhere cannot help it).
 *   Slot waiters are served first come, first served, as the slot's listeners run.
 * - What a copy sees is the board's: which pieces the others have or are reading, at once (rarity = the
 *   copies in progress that have or read a piece; a finished copy leaves the board).
 * - Read slots: `readSlots` per node (NODE_READ_LIMIT), one taken per piece read.
 * - Rates: a read moves at min(its node's read cap / the reads that node serves, the destination's write cap
 *   / the reads it runs), recomputed when either count changes (unused share is not handed on). A copy counts
 *   a read in flight at what it expected when it started (cap / (readers + 1), its own slot counted:
 *   copy-workflow.ts's expectedRate) or, with `recount`, at its current share (cap / readers now).
 * - Not modelled: hashing and writing time, the whole-image hash at the end, latency, record delays
 *   (copies in other conductors), failures.
 */
import {
  MAX_PEERS_PER_COPY,
  type PiecePlan,
  SWARM_POLL_MS,
  type TurnInput,
  createPiecePlan,
  isComplete,
  markReading,
  pieceDone,
  pieceTurn,
  choiceOffset,
} from '@app/image-store';
import { EventHeap } from './fluid-network';
import { maxMinRates } from './max-min-rates';
import { samplePeers, seededRandom } from './random-peers';
import { endGameJoins } from './swarm-end-game';
import type { SwarmModel, SwarmRun } from './swarm-model-types';

export type { SwarmModel, SwarmRun } from './swarm-model-types';

type HolderState = 'ready' | 'queued' | 'reading' | 'wait-changed' | 'wait-slot' | 'stopped';

interface Holder {
  copy: Copy;
  node: number;
  partial?: { has: (index: number) => boolean };
  state: HolderState;
}

interface Copy {
  node: number;
  plan: PiecePlan;
  holders: Holder[];
  /** The copies in progress it joined (its peers): at its start, and through the end game. */
  joined: Set<number>;
  inFlight: { count: number; sum: number };
  reads: Set<Read>;
  lastReadEnded: number;
  /** How many of its peers have each piece (the seed-only rule's "held by a copy in progress it reads from"). */
  peerHas: Uint8Array;
  choice: { rarity: (index: number) => number; readonly offset: number };
  finish: number;
  /** The share of the image not yet in the verified prefix when its last piece arrived. */
  unhashed: number;
}

interface Read {
  kind: 'read';
  holder: Holder;
  index: number;
  expected: number;
  remaining: number;
  rate: number;
  last: number;
  version: number;
}

interface Look {
  kind: 'look';
  copy: Copy;
  version: number;
}

export function runSwarm(model: SwarmModel): SwarmRun {
  const wallStart = performance.now();
  const { destinations: n, pieceCount: p, bps } = model;
  const random = seededRandom(model.seed);
  const pieceSize = (i: number) => Math.min(model.pieceBytes, model.imageBytes - i * model.pieceBytes);
  const serving = Array.from({ length: n + 1 }, () => new Set<Read>());
  const slots = new Int32Array(n + 1);
  const slotWaiters = Array.from({ length: n + 1 }, (): Holder[] => []);
  // The board: copies in progress that have or read each piece, and that read it now.
  const holdersOf = new Int32Array(p);
  const readingOf = new Int32Array(p);
  let inProgress = n;
  const heap = new EventHeap<Read | Look>();
  const queue: Holder[] = [];
  const touched = new Set<number>();
  let now = 0;
  let events = 0;
  let originBytes = 0;
  let overCount = 0;
  let overChecks = 0;
  let usedAtFull = 0;

  const copies: Copy[] = [];
  const peersOf: Copy[][] = Array.from({ length: n + 1 }, () => []); // who reads from node k
  for (let k = 1; k <= n; k++) {
    const copy: Copy = {
      node: k,
      plan: createPiecePlan(p),
      holders: [],
      joined: new Set(),
      inFlight: { count: 0, sum: 0 },
      reads: new Set(),
      lastReadEnded: 0,
      peerHas: new Uint8Array(p),
      choice: {
        rarity: (index) => holdersOf[index]!,
        get offset() {
          return inProgress === 1 ? 0 : choiceOffset(p, random);
        },
      },
      finish: NaN,
      unhashed: NaN,
    };
    copies.push(copy);
  }
  const has = (node: number, index: number) => copies[node - 1]!.plan.status[index] === 'done';
  // A copy reads from `peer` from now on: what the peer has counts for its seed rule and end game.
  const join = (copy: Copy, peer: number) => {
    copy.joined.add(peer);
    copy.holders.push({ copy, node: peer, partial: { has: (i) => has(peer, i) }, state: 'ready' });
    peersOf[peer]!.push(copy);
    for (let i = 0; i < p; i++) if (has(peer, i)) copy.peerHas[i]!++;
  };
  for (const copy of copies) {
    copy.holders.push({ copy, node: 0, state: 'ready' });
    for (const peer of samplePeers(n, copy.node, MAX_PEERS_PER_COPY, random)) join(copy, peer);
  }
  const joins: SwarmRun['endGameJoins'] = [];
  // The end game at a look (swarm-end-game.ts); the look then wakes every holder, the new ones included.
  const endGame = (copy: Copy) => {
    const found = endGameJoins({
      others: () => copies.filter((c) => c !== copy && !isComplete(c.plan)).map((c) => c.node),
      joined: copy.joined,
      pieceCount: p,
      wanted: (i) => copy.plan.status[i] === 'missing' && copy.peerHas[i] === 0,
      has,
      random,
    });
    if (found.length === 0) return;
    const had = copy.plan.status.filter((s) => s === 'done').length / p;
    for (const peer of found) {
      join(copy, peer);
      joins.push({ had, at: now });
    }
  };

  const share = (read: Read) => {
    const copy = read.holder.copy;
    return Math.min(bps / serving[read.holder.node]!.size, bps / copy.reads.size);
  };
  const update = (read: Read) => setRate(read, share(read));
  const setRate = (read: Read, rate: number) => {
    if (rate === read.rate) return;
    read.remaining -= read.rate * (now - read.last);
    read.last = now;
    read.rate = rate;
    read.version++;
    heap.push(now + Math.max(0, read.remaining) / rate, read);
  };
  const flushRates = () => {
    if (model.maxMin) {
      touched.clear();
      const reads = copies.flatMap((c) => [...c.reads]);
      const rates = maxMinRates(
        reads,
        (r) => r.holder.node,
        (r) => r.holder.copy.node,
        n + 1,
        bps,
      );
      reads.forEach((read, i) => setRate(read, rates[i]!));
      return;
    }
    for (const node of touched) {
      for (const read of serving[node]!) update(read);
      if (node > 0) for (const read of copies[node - 1]!.reads) update(read);
    }
    touched.clear();
  };

  const inFlightOf = (copy: Copy) => {
    if (!model.recount) return copy.inFlight;
    let sum = 0;
    for (const read of copy.reads) sum += bps / serving[read.holder.node]!.size;
    return { count: copy.reads.size, sum };
  };
  const turn = (holder: Holder, slotHeld: boolean) => {
    const { copy } = holder;
    const input: TurnInput = {
      plan: copy.plan,
      holder: { node: String(holder.node), ...(holder.partial ? { partial: holder.partial } : {}) },
      failed: false,
      inFlight: inFlightOf(copy),
      slotHeld,
      swarm: {
        choice: copy.choice,
        seedOnly: (index) =>
          copy.peerHas[index]! > 0 ||
          readingOf[index]! > 0 ||
          (model.seedRule === 'board' && copy.choice.rarity(index) > 0),
        perPieceSlots: true,
        expectedRate: bps / (slots[holder.node]! + 1),
        writeBps: bps,
        starved: now - copy.lastReadEnded >= SWARM_POLL_MS / 1000,
      },
    };
    const next = pieceTurn(input);
    if (next.kind === 'wait-room') {
      let actual = 0;
      for (const read of copy.reads) actual += read.rate > 0 ? read.rate : share(read);
      overCount += input.inFlight.sum / actual;
      usedAtFull += actual / bps;
      overChecks++;
    }
    return next;
  };
  const wake = (holder: Holder) => {
    if (holder.state !== 'wait-changed' && holder.state !== 'wait-slot' && holder.state !== 'ready') return;
    holder.state = 'queued';
    queue.push(holder);
  };
  const notify = (copy: Copy) => copy.holders.forEach(wake);
  const releaseSlot = (node: number) => {
    slots[node]!--;
    const waiting = slotWaiters[node]!;
    slotWaiters[node] = [];
    waiting.forEach(wake);
  };

  const startRead = (holder: Holder, index: number) => {
    const { copy } = holder;
    markReading(copy.plan, index, String(holder.node));
    holdersOf[index]!++;
    readingOf[index]!++;
    const expected = bps / (slots[holder.node]! + 1); // its own slot counted, as in copy-workflow.ts
    copy.inFlight.count++;
    copy.inFlight.sum += expected;
    const read: Read = {
      kind: 'read',
      holder,
      index,
      expected,
      remaining: pieceSize(index),
      rate: 0,
      last: now,
      version: 0,
    };
    serving[holder.node]!.add(read);
    copy.reads.add(read);
    touched.add(holder.node).add(copy.node);
    holder.state = 'reading';
  };
  const runHolder = (holder: Holder) => {
    let next = turn(holder, false);
    if (next.kind === 'take-slot') {
      if (slots[holder.node]! >= model.readSlots) {
        holder.state = 'wait-slot';
        slotWaiters[holder.node]!.push(holder);
        return;
      }
      slots[holder.node]!++;
      next = turn(holder, true);
      if (next.kind === 'read') return startRead(holder, next.index);
      releaseSlot(holder.node);
    }
    if (next.kind === 'read') throw new Error('a read without a slot');
    holder.state = next.kind === 'stop' ? 'stopped' : 'wait-changed';
  };
  const drain = () => {
    for (let i = 0; i < queue.length; i++) {
      const holder = queue[i]!;
      if (holder.state === 'queued') runHolder(holder);
    }
    queue.length = 0;
    flushRates();
  };

  // At each look (a uniform sample of a copy's time): how much of its write cap its reads use, and, when
  // under it, whether the admission rule holds it back or it has nothing (or no slot) to read.
  const states = { full: 0, heldBack: 0, noSlot: 0, nothing: 0 };
  const sampleState = (copy: Copy) => {
    let actual = 0;
    for (const read of copy.reads) actual += read.rate;
    const counted = inFlightOf(copy);
    if (actual >= 0.95 * bps) states.full++;
    else if (counted.count > 0 && counted.sum >= bps) states.heldBack++;
    else if (copy.holders.some((h) => h.state === 'wait-slot')) states.noSlot++;
    else states.nothing++;
  };

  const readEnded = (read: Read) => {
    const { holder, index } = read;
    const { copy } = holder;
    serving[holder.node]!.delete(read);
    copy.reads.delete(read);
    touched.add(holder.node).add(copy.node);
    copy.inFlight.count--;
    copy.inFlight.sum -= read.expected;
    copy.lastReadEnded = now;
    readingOf[index]!--;
    const prefix = copy.plan.donePrefix;
    pieceDone(copy.plan, index);
    if (holder.node === 0) originBytes += pieceSize(index);
    for (const reader of peersOf[copy.node]!) reader.peerHas[index]!++;
    if (isComplete(copy.plan)) {
      copy.finish = now;
      copy.unhashed = (p - prefix) / p;
      inProgress--;
      for (let i = 0; i < p; i++) holdersOf[i]!--;
    }
    releaseSlot(holder.node);
    notify(copy);
    holder.state = 'ready';
    wake(holder);
  };

  for (const copy of copies) {
    heap.push(random() * (SWARM_POLL_MS / 1000), { kind: 'look', copy, version: 0 });
    notify(copy);
  }
  drain();
  for (let next = heap.pop(); next !== undefined; next = heap.pop()) {
    now = next.time;
    const item = next.item;
    if (item.kind === 'look') {
      if (isComplete(item.copy.plan)) continue;
      sampleState(item.copy);
      if (model.endGame) endGame(item.copy);
      notify(item.copy);
      heap.push(now + SWARM_POLL_MS / 1000, item);
    } else {
      events++;
      readEnded(item);
    }
    drain();
  }
  const unfinished = copies.filter((c) => Number.isNaN(c.finish)).length;
  if (unfinished > 0) throw new Error(`${unfinished} copies stalled at ${now.toFixed(3)} s`);
  return {
    finishSeconds: copies.map((c) => c.finish),
    unhashed: copies.map((c) => c.unhashed),
    countedOverActual: overCount / Math.max(1, overChecks),
    usedAtFull: usedAtFull / Math.max(1, overChecks),
    lookStates: states,
    endGameJoins: joins,
    originBytes,
    events,
    wallMs: performance.now() - wallStart,
  };
}
