import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { holderIdSchema, imageIdSchema, nodeIdSchema, parseField } from '@app/contracts';

/** One lock per (node, image), kept in that node's own part of the shared folder. */
export interface LockKey {
  node: string;
  imageId: string;
}

export type LockMode = 'shared' | 'exclusive';

/** Who holds a lock; written into lock entry names so anyone can read it back. */
export interface LockHolder {
  conductorId: string;
  attemptId: string;
}

export function validateLockKey(key: LockKey): LockKey {
  return {
    node: parseField(nodeIdSchema, key.node, 'node'),
    imageId: parseField(imageIdSchema, key.imageId, 'imageId'),
  };
}

export function validateHolder(holder: LockHolder): LockHolder {
  return {
    conductorId: parseField(holderIdSchema, holder.conductorId, 'conductorId'),
    attemptId: parseField(holderIdSchema, holder.attemptId, 'attemptId'),
  };
}

/** The global order used to take several locks without deadlock. */
export function lockKeyString(key: LockKey): string {
  return `${key.node}/${key.imageId}`;
}

export function lockKeyDir(root: string, key: LockKey): string {
  return path.join(root, key.node, 'locks', key.imageId);
}

export function nodeLocksDir(root: string, node: string): string {
  return path.join(root, node, 'locks');
}

/** A fresh attempt id: what tells one attempt's lock entries from another's of the same conductor. */
export function newAttemptId(): string {
  return randomBytes(8).toString('hex');
}
