import { describe, expect, it } from 'vitest';
import { waitFor } from './support/async';
import { conductorPool } from './support/conductor-harness';
import { BedCell } from './support/hosts/bed-cell';
import { HostBed } from './support/hosts/host-bed';
import { sh } from './support/hosts/host-network';

/**
 * GET /health/ready asked from inside `host` (its link may be cut: the test's own namespace cannot reach
 * it then). Resolves with the status code and body, or with status 0 when no answer came within
 * `timeoutMs` (a probe held by the hung mount).
 */
async function readyFrom(
  bed: HostBed,
  host: string,
  url: string,
  timeoutMs = 15_000,
): Promise<{ status: number; body: string }> {
  const script =
    `fetch(${JSON.stringify(`${url}/health/ready`)},{signal:AbortSignal.timeout(${timeoutMs})})` +
    `.then(async(r)=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})))` +
    `.catch(()=>process.stdout.write(JSON.stringify({status:0,body:''})))`;
  const [command, ...prefix] = bed.launcher(host);
  const out = await sh(command!, [...prefix, process.execPath, '-e', script], timeoutMs + 10_000);
  return JSON.parse(out) as { status: number; body: string };
}

/** In a 503's body (terminus: `error` lists the parts that are down): is CACHE_ROOT's part down? */
function cacheRootDown(body: string): boolean {
  const parsed = JSON.parse(body) as { error?: { cacheRoot?: { status?: string } } };
  return parsed.error?.cacheRoot?.status === 'down';
}

/**
 * Issue 21 on the multi-host bed: a host cut off (broker and sshfs mount together; the mount's calls wait
 * in the kernel). The readiness probe must still answer, not ready, bounded by CacheRootGuard and the
 * probe's own time limit, so a load balancer or systemd sees the conductor down instead of a hung probe;
 * ready again once the link returns.
 */
describe('hosts: readiness of a conductor whose link is cut', () => {
  let bed: HostBed | undefined;
  const pool = conductorPool(async () => {
    await bed?.teardown();
  });

  it('answers 503 during the cut (the probe does not hang on the mount), and 200 again after', async () => {
    bed = await HostBed.create({ hosts: ['n1'], brokers: 1 });
    const cell = await BedCell.create(bed, pool, ['node-a']);
    const n1 = await cell.start('n1', 'ready-n1');
    await waitFor(async () => (await n1.admin.get('/health/ready')).status === 200, 'n1 ready', 30_000);

    await bed.cutLink('n1');
    try {
      // Asked again and again during the cut: every answer comes, and each one is 503 once the cut shows.
      const answers: number[] = [];
      await waitFor(
        async () => {
          const answer = await readyFrom(bed!, 'n1', n1.admin.baseUrl);
          answers.push(answer.status);
          return answer.status === 503 && cacheRootDown(answer.body);
        },
        'a 503 with the cacheRoot part down, from inside the cut-off host',
        60_000,
      );
      const later = await readyFrom(bed, 'n1', n1.admin.baseUrl);
      expect(later.status, later.body).toBe(503);
      expect(cacheRootDown(later.body), later.body).toBe(true);
      expect(
        answers.filter((s) => s === 0),
        `unanswered probes among ${answers.join(',')}`,
      ).toEqual([]);
    } finally {
      await bed.restoreLink('n1');
    }
    // Right after the link is up again the host may be unreachable for a moment (EHOSTUNREACH): asked again.
    await waitFor(
      () =>
        n1.admin.get('/health/ready').then(
          (r) => r.status === 200,
          () => false,
        ),
      'n1 ready again after the link returned',
      90_000,
    );
  }, 240_000);
});
