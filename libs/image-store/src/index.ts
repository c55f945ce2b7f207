export { ImageStore } from './image-store';
export { type ImageStoreOptions, type ExpectedImage, type Inspection } from './store-context';
export { CopyPipeline, type CopyImageRequest, type CopyImageOutcome } from './copy-pipeline';
export { type IrreversibleStep } from './publish';
export {
  CacheEntries,
  type CacheEntry,
  type DeletedImage,
  type RemoveLeftoverTmpOptions,
  LITTER_PREFIXES,
} from './cache-entries';
export { NodeMarkers, type NodeRegistration } from './node-markers';
export { ImageImport, type ImportImageOptions } from './image-import';
export { type NodeMarker, NODE_MARKER_FILE, nodeMarkerSchema, registeredBySchema } from './node-marker-file';
export { type ImageMeta, imageMetaSchema } from './image-meta';
export { type NodeLayout, parseTmpName } from './cache-layout';
export { COPY_CHUNK_BYTES } from './image-copier';
export {
  JobRecords,
  type JobRecord,
  type JobStatus,
  jobRecordSchema,
  JOBS_FOLDER,
  CANCELS_FOLDER,
} from './job-records';
