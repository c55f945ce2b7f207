import { z } from 'zod';
import { nodeIdSchema } from '@app/contracts';

/** A byte-rate cap per node: `fallback` for every node not named in `nodes`; 0 means no cap. */
export interface ByteRateCaps {
  fallback: number;
  nodes: Readonly<Record<string, number>>;
}

/** Whether any node gets a cap from these settings. */
export function hasCap(caps: ByteRateCaps): boolean {
  return caps.fallback > 0 || Object.values(caps.nodes).some((rate) => rate > 0);
}

export function capOf(caps: ByteRateCaps, node: string): number {
  return caps.nodes[node] ?? caps.fallback;
}

const UNITS: Record<string, number> = {
  '': 1,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
};
const RATE = /^(\d+)(K|M|G|Ki|Mi|Gi)?$/;

/**
 * `<rate>` for every node, or a comma-separated list of `<node>=<rate>` with an optional `*=<rate>` for
 * the others; a rate is bytes per second, a whole number with an optional K, M, G (1000^n) or Ki, Mi, Gi
 * (1024^n) suffix; 0 means no cap. Examples: `50Mi`, `node-a=20M,node-b=0,*=100Mi`.
 */
export const byteRateCapsSchema = z.string().transform((text, ctx): ByteRateCaps => {
  const caps: { fallback: number; nodes: Record<string, number> } = { fallback: 0, nodes: {} };
  const fail = (message: string) => {
    ctx.addIssue({
      code: 'custom',
      message: `${message}; expected bytes per second for every node (e.g. 50Mi) or node=rate pairs (e.g. node-a=20M,*=0)`,
    });
    return z.NEVER;
  };
  const parts = text.split(',').map((p) => p.trim());
  const bare = parts.length === 1 && !parts[0]!.includes('=');
  for (const part of parts) {
    const [name, rateText] = bare ? ['*', part] : part.split('=', 2).map((p) => p.trim());
    const match = RATE.exec(rateText ?? '');
    if (!match) return fail(`${JSON.stringify(part)} is not a rate`);
    const rate = Number(match[1]) * UNITS[match[2] ?? '']!;
    if (!Number.isSafeInteger(rate)) return fail(`${JSON.stringify(part)} is too large`);
    if (name === '*') caps.fallback = rate;
    else if (nodeIdSchema.safeParse(name).success) caps.nodes[name!] = rate;
    else return fail(`${JSON.stringify(name)} is not a node id`);
  }
  return caps;
});
