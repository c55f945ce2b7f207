import { z } from 'zod';
import {
  byteCountSchema,
  holderIdSchema,
  imageIdSchema,
  nodeIdSchema,
  requestIdSchema,
  sha256Schema,
} from '@app/contracts';
import { type JsonFileRead, readJsonFile } from './shared-json-file';

/** What `<imageId>.meta.json` records. It is written only after the image's bytes were verified. */
export interface ImageMeta {
  v: 1;
  imageId: string;
  size: number;
  sha256: string;
  createdAt: string;
  lastUsedAt: string;
  /** Where the bytes came from: a node (a copy), or from outside the cell (`via`). */
  source?: { node?: string; requestId?: string; via?: 'file' | 'origin' };
  fencingToken?: number;
  attemptId?: string;
}

// Meta files come from a shared folder any node may write: everything is checked, nothing trusted.
export const imageMetaSchema: z.ZodType<ImageMeta> = z.object({
  v: z.literal(1),
  imageId: imageIdSchema,
  size: byteCountSchema,
  sha256: sha256Schema,
  createdAt: z.iso.datetime(),
  lastUsedAt: z.iso.datetime(),
  source: z
    .object({
      node: nodeIdSchema.optional(),
      requestId: requestIdSchema.optional(),
      via: z.enum(['file', 'origin']).optional(),
    })
    .optional(),
  fencingToken: byteCountSchema.optional(),
  attemptId: holderIdSchema.optional(),
});

const META_MAX_BYTES = 64 * 1024;

export function serializeMeta(meta: ImageMeta): string {
  return JSON.stringify(meta, null, 2) + '\n';
}

/**
 * Reads and validates a meta file: its meta, missing, or invalid with the field and reason. Other I/O
 * errors (EIO, EACCES...) are thrown, so a transient fault is not mistaken for "this image is not here".
 */
export function readMetaFile(metaPath: string, imageId: string): Promise<JsonFileRead<ImageMeta>> {
  return readJsonFile(metaPath, imageMetaSchema, META_MAX_BYTES, (meta) =>
    meta.imageId === imageId
      ? undefined
      : `imageId: is ${JSON.stringify(meta.imageId)}, the file is named for ${JSON.stringify(imageId)}`,
  );
}
