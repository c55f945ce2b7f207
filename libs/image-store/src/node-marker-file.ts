import { z } from 'zod';
import { nodeIdSchema } from '@app/contracts';
import { type JsonFileRead, readJsonFile } from './shared-json-file';

/**
 * `<CACHE_ROOT>/<node>/node.json`: the node is part of the cell. Conductors copy only between registered
 * nodes and never create a node's folder; `icc node add` writes this, `icc node rm` removes it.
 */
export interface NodeMarker {
  v: 1;
  /** Must equal the folder's name (a marker copied from another node's folder is not a registration). */
  node: string;
  registeredAt: string;
  /** Who registered it (operator or agent), free text for people. */
  registeredBy: string;
}

export const NODE_MARKER_FILE = 'node.json';
export const NODE_MARKER_VERSION = 1;
const NODE_MARKER_MAX_BYTES = 4 * 1024;

export const registeredBySchema = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'must be at most 128 characters')
  .regex(/^[\x20-\x7e]+$/, 'must be printable ASCII');

// Written by any node's operator into the shared folder: checked like every other input.
export const nodeMarkerSchema: z.ZodType<NodeMarker> = z.object({
  v: z.literal(NODE_MARKER_VERSION),
  node: nodeIdSchema,
  registeredAt: z.iso.datetime(),
  registeredBy: registeredBySchema,
});

export function readNodeMarker(file: string, node: string): Promise<JsonFileRead<NodeMarker>> {
  return readJsonFile(file, nodeMarkerSchema, NODE_MARKER_MAX_BYTES, (marker) =>
    marker.node === node
      ? undefined
      : `node: is ${JSON.stringify(marker.node)}, the folder is ${JSON.stringify(node)}`,
  );
}

export function serializeNodeMarker(marker: NodeMarker): string {
  return JSON.stringify(marker, null, 2) + '\n';
}
