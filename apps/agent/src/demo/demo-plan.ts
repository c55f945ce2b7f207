import type { CopyRequest } from '@app/contracts';

export const MiB = 1024 * 1024;
export const DEFAULT_BIG_IMAGE_MIB = 256;

export interface DemoImage {
  imageId: string;
  bytes: number;
  /** The node it is imported into; none: only the demo's origin serves it. */
  seedNode?: string;
}

export type DemoCopyKind = 'fan-out' | 'duplicate' | 'pair' | 'origin';

export interface DemoCopy {
  kind: DemoCopyKind;
  request: CopyRequest;
}

/** A pre-cache job run after the copies, onto every node of the cell (`icc precache --all`). */
export interface DemoPrecache {
  jobId: string;
  imageId: string;
}

export interface DemoPlan {
  nodes: string[];
  images: DemoImage[];
  /** In publishing order. */
  copies: DemoCopy[];
  precache: DemoPrecache;
}

/**
 * Six nodes, five images, eleven requests, then one pre-cache job:
 *   - fan-out: the big image to every other node, no source given (the conductor picks one holding it:
 *     many shared readers on one source lock);
 *   - duplicate: the same image and destination requested twice (coalesced, or answered already-present);
 *   - disjoint pairs: two copies with a named source, on node pairs nothing else touches for those images;
 *   - origin: an image no node holds, to two nodes: downloaded once from the cell's origin, then copied.
 * The duplicates and the first pair are published right behind the first fan-out copy, so they run while
 * the big image is being fanned out (the conductor takes COPY_CONCURRENCY requests at a time).
 * The job then puts the small image of the second pair onto every node: the two holding it answer
 * already-present, the other four get a copy.
 */
export function demoPlan(bigImageMib: number, runTag: string): DemoPlan {
  const nodes = ['node-1', 'node-2', 'node-3', 'node-4', 'node-5', 'node-6'];
  const images: DemoImage[] = [
    { imageId: 'ubuntu-24.04.qcow2', bytes: bigImageMib * MiB, seedNode: 'node-1' },
    { imageId: 'debian-12.qcow2', bytes: 48 * MiB, seedNode: 'node-2' },
    { imageId: 'alpine-3.20.qcow2', bytes: 16 * MiB, seedNode: 'node-3' },
    { imageId: 'cirros-0.6.2.img', bytes: 4 * MiB + 12345, seedNode: 'node-4' },
    { imageId: 'fedora-41.qcow2', bytes: 12 * MiB },
  ];
  let n = 0;
  const copy = (kind: DemoCopyKind, imageId: string, destination: string, source?: string): DemoCopy => ({
    kind,
    request: {
      v: 1,
      requestId: `${runTag}-${++n}-${kind}`,
      imageId,
      destination,
      ...(source ? { source } : {}),
    },
  });
  const fanOut = ['node-2', 'node-3', 'node-4', 'node-5', 'node-6'].map((d) =>
    copy('fan-out', 'ubuntu-24.04.qcow2', d),
  );
  const copies = [
    fanOut[0]!,
    copy('duplicate', 'debian-12.qcow2', 'node-5'),
    copy('duplicate', 'debian-12.qcow2', 'node-5'),
    copy('pair', 'alpine-3.20.qcow2', 'node-6', 'node-3'),
    ...fanOut.slice(1),
    copy('pair', 'cirros-0.6.2.img', 'node-1', 'node-4'),
    copy('origin', 'fedora-41.qcow2', 'node-4'),
    copy('origin', 'fedora-41.qcow2', 'node-6'),
  ];
  return { nodes, images, copies, precache: { jobId: `${runTag}-precache`, imageId: 'cirros-0.6.2.img' } };
}

/** Distinct (image, destination) pairs the plan (copies and job) must leave verified. */
export function expectedDestinations(plan: DemoPlan): { imageId: string; node: string }[] {
  const seen = new Map<string, { imageId: string; node: string }>();
  const add = (imageId: string, node: string) => seen.set(`${node}/${imageId}`, { imageId, node });
  for (const { request } of plan.copies) add(request.imageId, request.destination);
  for (const node of plan.nodes) add(plan.precache.imageId, node);
  return [...seen.values()];
}
