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
} from './image-store';
export { type ImageMeta, imageMetaSchema } from './image-meta';
export { type NodeLayout, parseTmpName } from './cache-layout';
export { COPY_CHUNK_BYTES } from './image-copier';
