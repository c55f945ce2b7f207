import type { Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminHttp } from './support/admin-http';
import { until } from './support/async';
import { launchChromium, testOutputPath } from './support/browser';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';

const MiB = 1024 * 1024;
const TOKEN = 'admin-page-test-token-0123456789';
const IMAGE = 'big.qcow2';
const DESTINATIONS = ['node-b', 'node-c', 'node-d'];
export const SCREENSHOT = 'admin-status-page.png';

describe('admin status page in a real browser', () => {
  let browser: Browser | undefined;
  const bed = conductorTestbed(['node-a', ...DESTINATIONS], {});
  const pool = bed.pool;
  afterEach(async () => {
    await browser?.close();
    browser = undefined;
  });

  it('shows a live copy whose progress bar advances and the lock table filling, from the token in the URL', async () => {
    const c = bed.cell!;
    // Fails (does not skip) with the install command when /usr/bin/chromium is missing.
    browser = await launchChromium();
    const image = await c.seed('node-a', IMAGE, 1024 * MiB);
    // A finished pre-cache job in the cell's records, for the jobs table.
    await c.store.jobs.create({
      v: 1,
      jobId: 'page-job',
      type: 'precache',
      imageId: IMAGE,
      nodes: ['node-b'],
      createdAt: new Date().toISOString(),
      createdBy: 'test',
    });
    await c.store.jobs.recordOutcome('page-job', {
      node: 'node-b',
      outcome: 'completed',
      bytes: MiB,
      at: new Date().toISOString(),
    });
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({
        CONDUCTOR_ID: 'admin-page',
        ADMIN_TOKEN: TOKEN,
        COPY_CONCURRENCY: '3',
        // A cap high enough not to slow the copies, so the bandwidth panel has a node to show.
        NODE_WRITE_BPS: 'node-d=8Gi',
      }),
    ).ready();
    const http = AdminHttp.of(conductor, TOKEN);

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems: string[] = [];
    const foreign: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    page.on('request', (request) => {
      if (!request.url().startsWith(http.baseUrl) && !request.url().startsWith('data:'))
        foreign.push(request.url());
    });

    // The token goes in the fragment (never sent to a server); the page keeps it for the tab and hides it.
    await page.goto(`${http.baseUrl}/#token=${TOKEN}`);
    await page.getByText('consumer consuming').waitFor({ timeout: 10_000 });
    expect(page.url()).toBe(`${http.baseUrl}/`);
    await expect(page.locator('#conductor').textContent()).resolves.toContain('admin-page');
    await expect(page.locator('#copies-body').textContent()).resolves.toContain('No copy running.');

    // Three 1 GiB copies at once, from one source.
    const sent = DESTINATIONS.map((destination) =>
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: `page-${destination}`,
        imageId: IMAGE,
        destination,
        source: 'node-a',
        sha256: image.sha256,
      }),
    );

    // A progress bar with bytes done, then the same bar further on (the page refreshes itself).
    const readBars = () =>
      page.locator('[role=progressbar]').evaluateAll((all) =>
        all.map((b) => ({
          key: b.getAttribute('data-key') ?? '',
          done: Number(b.getAttribute('aria-valuenow')),
          width: (b.firstElementChild as unknown as { style: { width: string } }).style.width,
        })),
      );
    const firstSeen = await until(
      async () => {
        const bars = await readBars();
        return bars.some((b) => b.done > 0) ? bars : undefined;
      },
      'a progress bar with bytes done',
      60_000,
      50,
    );
    const step = await until(
      async () => {
        for (const bar of await readBars()) {
          const was = firstSeen.find((b) => b.key === bar.key);
          if (was && was.done > 0 && bar.done > was.done)
            return { key: bar.key, from: was.done, to: bar.done, widthBefore: was.width, width: bar.width };
        }
        return undefined;
      },
      'the same progress bar further on',
      30_000,
      50,
    );
    expect(step.to).toBeGreaterThan(step.from);
    expect(parseFloat(step.width)).toBeGreaterThan(parseFloat(step.widthBefore));
    expect(step.key).toMatch(new RegExp(`^${IMAGE.replace('.', '\\.')} -> node-[bcd]$`));
    const row = page.locator(`#copies-body tr[data-key="${step.key}"]`);
    await expect(row.textContent()).resolves.toMatch(/node-a → node-[bcd]/);

    // The lock table fills: exclusive on the destinations, shared readers on the source, all held here.
    const lockRows = await until(
      async () => {
        const rows = await page
          .locator('#locks-body tr[data-lock]')
          .evaluateAll((all) => all.map((r) => r.getAttribute('data-lock') ?? ''));
        return rows.some((l) => /^node-[bcd]\/big\.qcow2\/exclusive$/.test(l)) &&
          rows.includes('node-a/big.qcow2/shared')
          ? rows
          : undefined;
      },
      'exclusive and shared rows in the lock table',
      10_000,
      50,
    );
    expect(lockRows.every((l) => /^node-[abcd]\/big\.qcow2\/(exclusive|shared)$/.test(l))).toBe(true);
    await expect(page.locator('#locks-body').textContent()).resolves.toContain('this conductor');
    // The source's read slots in use, and the cleaner (off by default) say so too.
    await until(
      async () => /node-a[1-3]/.test((await page.locator('#reads-body').textContent()) ?? ''),
      'node-a in the reads per source node',
      10_000,
      50,
    );
    await expect(page.locator('#reads-note').textContent()).resolves.toBe(
      'at most 4 per node in this conductor',
    );
    await expect(page.locator('#cleaner-body').textContent()).resolves.toContain('Off');
    // The cell's jobs, and the caps with the bytes through the capped node.
    await expect(page.locator('#jobs-body tr[data-job="page-job"]').textContent()).resolves.toMatch(
      /page-job.*precache.*1 \/ 1.*1\.00 MiB.*done/,
    );
    await expect(page.locator('#bandwidth-body').textContent()).resolves.toContain('node-d: 8.00 GiB/s');
    await until(
      async () => /node-d writes\d/.test((await page.locator('#bandwidth-body').textContent()) ?? ''),
      'node-d in the bandwidth panel with the bytes written into it',
      10_000,
      50,
    );

    const file = await testOutputPath(SCREENSHOT);
    await page.screenshot({ path: file, fullPage: true });

    // When the copies are done the page says so, with the totals.
    for (const id of sent)
      expect(await bed.client!.finalReply(id, 120_000)).toMatchObject({ status: 'completed' });
    await until(
      async () =>
        (await page.locator('#copies-body').textContent())?.includes('No copy running.') &&
        (await page.locator('[data-total="Completed"] .value').textContent()) === '3',
      'the page showing the copies done',
      10_000,
      50,
    );
    await until(
      async () => (await page.locator('#locks-body').textContent())?.includes('No lock held.'),
      'the lock table empty again',
      10_000,
      50,
    );

    expect(problems).toEqual([]);
    expect(foreign).toEqual([]);
  });

  it('tells the operator when the token is missing or wrong, without showing any data', async () => {
    browser = await launchChromium();
    const conductor = await ConductorProcess.start(
      pool,
      bed.cell!.conductorEnv({ CONDUCTOR_ID: 'admin-page-denied', ADMIN_TOKEN: TOKEN }),
    ).ready();
    const http = AdminHttp.of(conductor, TOKEN);
    const page = await browser.newPage();
    for (const url of [`${http.baseUrl}/`, `${http.baseUrl}/?token=wrong-token-wrong-token`]) {
      await page.goto(url);
      await page.locator('#banner.show').waitFor({ timeout: 10_000 });
      await expect(page.locator('#banner').textContent()).resolves.toContain(
        'admin token is missing or wrong',
      );
      await expect(page.locator('body').textContent()).resolves.not.toContain('admin-page-denied');
      await page.evaluate('sessionStorage.clear()');
    }
  });
});
