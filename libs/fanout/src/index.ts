export { Fanout } from './fanout';
export type { FetchEnd } from './fanout';
export {
  chooseFetch,
  expectedInflow,
  mayFetch,
  mix,
  rarestUseful,
  HOLDER_PROBES,
  PIECE_PROBES,
  RAREST_SAMPLE,
} from './choose-fetch';
export { MAX_PIECES, validateFanoutInput } from './fanout-input';
export type { FanoutConfig, FanoutNodeInput } from './fanout-input';
export { PIECE_IN_FLIGHT, PIECE_MISSING, PIECE_VERIFIED } from './fanout-view';
export type { FanoutView, Fetch, IndexSetView, NodeView } from './fanout-view';
