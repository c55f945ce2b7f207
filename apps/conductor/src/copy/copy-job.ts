import type { CopyPriority, CopyRequest } from '@app/contracts';

export type CopyPhase = 'waiting-for-lock' | 'copying' | 'verifying' | 'publishing';

/** One copy to do: the fields of a request that decide what is copied where. */
export type CopyJob = Pick<
  CopyRequest,
  'imageId' | 'destination' | 'source' | 'sha256' | 'size' | 'priority'
>;

export interface CopyJobResult {
  status: 'completed' | 'already-present';
  source?: string;
  bytes: number;
  sha256: string;
  lockWaitMs?: number;
  copyMs?: number;
  verifyMs?: number;
  /** Bytes taken over from a dead attempt's partial copy instead of being read from the source. */
  resumedBytes?: number;
  /** The destination lock's generation under which the image was published. */
  fencingToken?: number;
}

/** What a running copy tells the world about itself (status page, progress events). */
export interface CopyProgress {
  phase: CopyPhase;
  source?: string;
  bytesDone: number;
  bytesTotal: number;
}

/** How one attempt of a copy runs: given to the copy workflow, which passes it on to an origin download. */
export interface CopyRunOptions {
  attemptId: string;
  /** Aborts the copy (shutdown); the lock's own loss aborts it too. */
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
  /** The copy's bandwidth class now (an interactive request joining a background copy raises it). */
  priority?: () => CopyPriority;
}

export function copyKey(job: Pick<CopyJob, 'imageId' | 'destination'>): string {
  return `${job.imageId} -> ${job.destination}`;
}
