export { ImageStore } from './image-store';
export {
  type ImageStoreOptions,
  partialOpenFlags,
  partialReadsBypassCache,
  type ExpectedImage,
  type Inspection,
  DEFAULT_RESUME_CHECKPOINT_BYTES,
} from './store-context';
export { CopyPipeline, type CopyImageRequest, type CopyImageOutcome } from './copy-pipeline';
export { type HelperHolder } from './helper-holders';
export {
  type SwarmRequest,
  MAX_PEERS_PER_COPY,
  MAX_REMOTE_PEERS_PER_COPY,
  choiceOffset,
} from './swarm-holders';
export { SWARM_POLL_MS } from './swarm-record';
export { type PieceTurn, type TurnInput, pieceTurn } from './piece-turn';
export { type PiecePlan, createPiecePlan, isComplete, markReading, pieceDone } from './piece-plan';
export { SWARMS_FOLDER } from './swarm-record';
export { type IrreversibleStep } from './publish';
export { CacheEntries } from './cache-entries';
export { type CacheEntry } from './cache-listing';
export { type DeletedImage } from './image-delete';
export { type RemoveLeftoverTmpOptions } from './leftover-tmp';
export { LITTER_PREFIXES } from './cache-litter';
export { NodeMarkers, type NodeRegistration } from './node-markers';
export { ImageImport, type ImportImageOptions } from './image-import';
export { type NodeMarker, NODE_MARKER_FILE, nodeMarkerSchema, registeredBySchema } from './node-marker-file';
export { type ImageMeta, imageMetaSchema } from './image-meta';
export {
  type PieceList,
  PIECE_BYTES,
  PIECE_LIST_MAX_PIECES,
  pieceBytesFor,
  pieceListSchema,
  parsePieceList,
  pieceRange,
} from './piece-list';
export { PieceHasher } from './piece-hasher';
export { type PieceListRead } from './piece-list-file';
export { type NodeLayout, PIECES_SUFFIX, parseTmpName } from './cache-layout';
export {
  JobRecords,
  type JobRecord,
  type JobStatus,
  jobRecordSchema,
  JOBS_FOLDER,
  CANCELS_FOLDER,
} from './job-records';
export { RequestAnswers, ANSWERS_FOLDER } from './request-answers';
// The copy loop itself, for benchmarks that compare its settings.
export { COPY_BUFFERS, COPY_CHUNK_BYTES, copyChunks, fileHandleIo, type StreamPace } from './image-copier';
export {
  ConductorRecords,
  type ConductorRecord,
  type ConductorRecordEntry,
  conductorRecordSchema,
  CONDUCTORS_FOLDER,
} from './conductor-records';
export {
  type CellConductor,
  type StartingConductor,
  DEFAULT_CONDUCTOR_BEAT_MS,
  DEFAULT_CONDUCTOR_DEAD_MS,
  judgeConductors,
  startRefusal,
} from './cell-conductors';
export { isEmptyFolder, linkUnlessPresent, makeCellFolder } from './durable-fs';
