import { promises as fsp } from 'node:fs';
import { z } from 'zod';
import { byteCountSchema, holderIdSchema, imageIdSchema, nodeIdSchema, requestIdSchema, sha256Schema } from '@app/contracts';
import { isErrno } from './fs-errors';

/** What `<imageId>.meta.json` records. It is written only after the image's bytes were verified. */
export interface ImageMeta {
  v: 1;
  imageId: string;
  size: number;
  sha256: string;
  createdAt: string;
  lastUsedAt: string;
  source?: { node?: string; requestId?: string };
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
    })
    .optional(),
  fencingToken: byteCountSchema.optional(),
  attemptId: holderIdSchema.optional(),
});

// A real meta file is a few hundred bytes; refusing big ones keeps a corrupt or hostile file from costing memory.
const META_MAX_BYTES = 64 * 1024;

/** The meta for `imageId`, or undefined when the text is not valid meta for exactly that image. */
export function parseMeta(text: string, imageId: string): ImageMeta | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const result = imageMetaSchema.safeParse(json);
  if (!result.success || result.data.imageId !== imageId) return undefined;
  return result.data;
}

export function serializeMeta(meta: ImageMeta): string {
  return JSON.stringify(meta, null, 2) + '\n';
}

/**
 * Reads and validates a meta file. Missing or invalid → undefined; other I/O errors (EIO, EACCES...) are
 * thrown, so a transient fault is not mistaken for "this image is not here".
 */
export async function readMetaFile(metaPath: string, imageId: string): Promise<ImageMeta | undefined> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(metaPath, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
    throw error;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.size > META_MAX_BYTES) return undefined;
    const buffer = Buffer.alloc(META_MAX_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > META_MAX_BYTES) return undefined;
    return parseMeta(buffer.subarray(0, bytesRead).toString('utf8'), imageId);
  } catch (error) {
    if (isErrno(error, 'EISDIR')) return undefined;
    throw error;
  } finally {
    await handle.close();
  }
}
