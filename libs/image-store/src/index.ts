export {
  ImageStore,
  type ImageStoreOptions,
  type ExpectedImage,
  type CopyImageRequest,
  type CopyImageOutcome,
  type IrreversibleStep,
  type ImportImageOptions,
  type RemoveLeftoverTmpOptions,
  type CacheEntry,
  type DeletedImage,
  type Inspection,
  type NodeRegistration,
} from './image-store';
export { type NodeMarker, NODE_MARKER_FILE, nodeMarkerSchema, registeredBySchema } from './node-marker';
export { type ImageMeta, imageMetaSchema } from './image-meta';
export { type NodeLayout, parseTmpName } from './cache-layout';
export { COPY_CHUNK_BYTES } from './image-copier';
