import * as path from 'node:path';
import { InvalidFieldError, holderIdSchema, imageIdSchema, nodeIdSchema, parseField } from '@app/contracts';
import { NODE_MARKER_FILE } from './node-marker-file';

/**
 * The folders of one node's cache. `locks` belongs to libs/locking.
 * `pinned` and `draining` are the operator's: a file `pinned/<imageId>` keeps that image from ever being
 * evicted by the cache cleaner; a file `draining` keeps conductors from choosing this node as a source.
 * `used/<imageId>` is the last-use marker: its mtime is the image's last read when later than the meta's
 * lastUsedAt (a read refreshes it in place, never by replacing the meta: see CopyPipeline.touchLastUsed).
 */
export interface NodeLayout {
  /** The validated node id. */
  node: string;
  dir: string;
  images: string;
  locks: string;
  tmp: string;
  /** Folder of pin markers: `<pinned>/<imageId>` (any kind of entry; its existence is what counts). */
  pinned: string;
  /** Folder of last-use markers: the mtime of `<used>/<imageId>` is that image's last read. */
  used: string;
  /** Marker path: while it exists, the node is never picked as a source by a conductor. */
  draining: string;
  /** The registration marker (node-marker-file.ts): without a valid one the node is unknown to conductors. */
  marker: string;
}

export const META_SUFFIX = '.meta.json';
/**
 * An image's piece list (piece-list.ts) sits beside its meta as `<imageId>~pieces.json`: '~' is never in
 * an image id, so no image can be named like a list, and releases that do not know lists skip the name.
 */
export const PIECES_SUFFIX = '~pieces.json';

// '~' is not allowed in image or attempt ids, so `<imageId>~<tag>.part` splits unambiguously even though both
// ids may contain dots.
const TMP_SEPARATOR = '~';
const TMP_SUFFIX = '.part';
/** The tag suffix of a partial copy's record (CacheLayout.partialRecordPath). */
export const RECORD_TAG_SUFFIX = '.origin';

/**
 * Builds every path under CACHE_ROOT, and only from validated ids. The ids' schema already rules out '/',
 * '..' and absolute names; `insideRoot` is a second, independent guard in case that schema ever loosens.
 */
export class CacheLayout {
  readonly root: string;

  constructor(root: string) {
    if (typeof root !== 'string' || root.length === 0) {
      throw new InvalidFieldError('root', 'must be a non-empty path');
    }
    this.root = path.resolve(root);
  }

  node(node: unknown, field = 'node'): NodeLayout {
    const id = parseField(nodeIdSchema, node, field);
    const dir = this.insideRoot(path.join(this.root, id), field);
    return {
      node: id,
      dir,
      images: path.join(dir, 'images'),
      locks: path.join(dir, 'locks'),
      tmp: path.join(dir, 'tmp'),
      pinned: path.join(dir, 'pinned'),
      used: path.join(dir, 'used'),
      draining: path.join(dir, 'draining'),
      marker: path.join(dir, NODE_MARKER_FILE),
    };
  }

  imageId(imageId: unknown, field = 'imageId'): string {
    return parseField(imageIdSchema, imageId, field);
  }

  imagePath(layout: NodeLayout, imageId: string): string {
    return this.insideRoot(path.join(layout.images, imageId), 'imageId');
  }

  metaPath(layout: NodeLayout, imageId: string): string {
    return this.insideRoot(path.join(layout.images, imageId + META_SUFFIX), 'imageId');
  }

  piecesPath(layout: NodeLayout, imageId: string): string {
    return this.insideRoot(path.join(layout.images, imageId + PIECES_SUFFIX), 'imageId');
  }

  pinPath(layout: NodeLayout, imageId: string): string {
    return this.insideRoot(path.join(layout.pinned, imageId), 'imageId');
  }

  /** A partial copy's name; `tag` is the attempt id (validated) or an internal unique tag. */
  usedPath(layout: NodeLayout, imageId: string): string {
    return this.insideRoot(path.join(layout.used, imageId), 'imageId');
  }

  tmpPath(layout: NodeLayout, imageId: string, tag: string): string {
    parseField(holderIdSchema, tag, 'attemptId');
    return this.insideRoot(path.join(layout.tmp, tmpName(imageId, tag)), 'imageId');
  }

  /**
   * The record of what a partial copy is a partial of (partial-copy.ts), beside it in tmp/. Named like a
   * partial file of tag `<tag>.origin`, so listing and removing leftovers treat both alike.
   */
  partialRecordPath(layout: NodeLayout, imageId: string, tag: string): string {
    parseField(holderIdSchema, tag, 'attemptId');
    return this.insideRoot(path.join(layout.tmp, tmpName(imageId, tag + RECORD_TAG_SUFFIX)), 'imageId');
  }

  private insideRoot(candidate: string, field: string): string {
    const resolved = path.resolve(candidate);
    const relative = path.relative(this.root, resolved);
    if (
      relative === '' ||
      relative === '..' ||
      relative.startsWith('..' + path.sep) ||
      path.isAbsolute(relative)
    ) {
      throw new InvalidFieldError(field, 'resolves outside CACHE_ROOT');
    }
    return resolved;
  }
}

export function tmpName(imageId: string, tag: string): string {
  return `${imageId}${TMP_SEPARATOR}${tag}${TMP_SUFFIX}`;
}

/** The image id whose piece list `name` (in an images folder) is; undefined for any other name. */
export function piecesImageId(name: string): string | undefined {
  return name.endsWith(PIECES_SUFFIX) ? name.slice(0, -PIECES_SUFFIX.length) : undefined;
}

/** Inverse of `tmpName`; undefined for names this library did not create. */
export function parseTmpName(name: string): { imageId: string; tag: string } | undefined {
  const separator = name.indexOf(TMP_SEPARATOR);
  if (separator <= 0 || !name.endsWith(TMP_SUFFIX)) return undefined;
  const tag = name.slice(separator + 1, -TMP_SUFFIX.length);
  if (tag.length === 0) return undefined;
  return { imageId: name.slice(0, separator), tag };
}
