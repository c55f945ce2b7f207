#!/usr/bin/env node
// First: it sizes libuv's thread pool, which must happen before anything uses the pool.
import './thread-pool';
import 'reflect-metadata';
import type { Server as TlsServer } from 'node:tls';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { CredentialFileError } from '@app/credentials';
import type pino from 'pino';
import { PROTOCOLS, readReleaseInfo } from '@app/contracts';
import { ConductorRecords, judgeConductors, startRefusal } from '@app/image-store';
import { AdminModule } from './admin/admin.module';
import { reloadAdminTlsOnSighup } from './admin/admin-tls-reload';
import type { ConductorConfig } from './config/conductor-config';
import { ConfigError, loadConductorConfig } from './config/load-conductor-config';
import { prepareRoundLeases } from './background/round-lease';
import { loadAdminTls, loadBrokerTls } from './config/tls-settings';
import {
  CacheRootCheck,
  type CacheRootCheckView,
  cacheRootCheckView,
  describeRefusal,
} from './cache-root/cache-root-check';
import { cacheRootMount } from './cache-root/cache-root-mount';
import { type ConductorSeams, composeConductor } from './compose-conductor';
import { ConductorModule } from './conductor.module';
import { createRootLogger } from './logging/root-logger';

/** sysexits' EX_CONFIG: the environment is wrong, restarting will not help. */
const EXIT_CONFIG = 78;

/** The application: the conductor's parts, and the admin endpoint that reads them. */
@Module({})
class ConductorApp {}

/** Starts the conductor of this process's environment; `seams` only from bench/ (see ConductorSeams). */
async function runConductor(seams: ConductorSeams = {}): Promise<void> {
  let config, brokerLogin, adminTls;
  try {
    config = loadConductorConfig();
    // Every TLS file is read and checked now, so a bad one stops the start with its setting's name.
    brokerLogin = loadBrokerTls(config);
    adminTls = loadAdminTls(config);
  } catch (caught) {
    const error = caught instanceof CredentialFileError ? new ConfigError([caught.message]) : caught;
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`conductor: ${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  const logger = createRootLogger(config.LOG_LEVEL, {
    conductorId: config.CONDUCTOR_ID,
    cell: config.CELL_ID,
  });
  const cacheRootCheck = await checkCacheRoot(config, logger);
  await checkCellReleases(config);
  await prepareRoundLeases(config.CACHE_ROOT);
  const cacheRootFsType = (await cacheRootMount(config.CACHE_ROOT))?.fsType;
  const conductor = await composeConductor(config, {
    rootLogger: logger,
    brokerLogin,
    seams,
    cacheRootFsType,
  });
  // forceCloseConnections: once the drain is over, keep-alive connections (a status page or a scraper polling)
  // are cut; without it server.close() waits for them, and a client polling often enough keeps the process alive.
  const app = await NestFactory.create(
    {
      module: ConductorApp,
      imports: [ConductorModule.forRoot(conductor), AdminModule.forRoot(conductor, { cacheRootCheck })],
    },
    {
      bufferLogs: true,
      forceCloseConnections: true,
      // HTTPS only when both files are set (ADMIN_TLS_*); plain HTTP otherwise, as before.
      httpsOptions: adminTls ? { cert: adminTls.cert, key: adminTls.key } : undefined,
    },
  );
  app.useLogger(app.get(Logger));
  // A graceful stop is a clean exit: code 0 (not death by the re-raised signal), with pino flushed.
  app.enableShutdownHooks([], { useProcessExit: true });
  // Without a token the admin API is only reachable from this machine.
  const host = config.ADMIN_TOKEN ? config.ADMIN_HOST : '127.0.0.1';
  if (!config.ADMIN_TOKEN)
    logger.warn(
      { host },
      'ADMIN_TOKEN is not set: the admin endpoint listens on 127.0.0.1 only, and its routes are open to anyone on this machine',
    );
  // HTTP first, so health checks answer (not ready) while the consumer starts.
  await app.listen(config.ADMIN_PORT, host);
  const address = app.getHttpServer().address() as { port: number };
  const tlsConfig = config;
  reloadAdminTlsOnSighup(app.getHttpServer() as TlsServer, () => loadAdminTls(tlsConfig), logger);
  await conductor.lifecycle.start();
  logger.info(
    {
      version: readReleaseInfo().version,
      adminPort: address.port,
      adminHost: host,
      adminTls: adminTls ? { subject: adminTls.subject, validTo: adminTls.validTo } : false,
      brokerTls: brokerLogin.tls !== undefined,
      brokerAuth: brokerLogin.auth,
      cacheRoot: config.CACHE_ROOT,
      concurrency: config.COPY_CONCURRENCY,
      // The auth header's value never goes into a log line: describe() shows its name only.
      origin: conductor.origin?.describe() ?? null,
    },
    'conductor started',
  );
}

/** Refuses to run on a shared folder that cannot support the lock timings (docs/network-file-systems.md). */
async function checkCacheRoot(config: ConductorConfig, logger: pino.Logger): Promise<CacheRootCheckView> {
  const report = await new CacheRootCheck({
    root: config.CACHE_ROOT,
    conductorId: config.CONDUCTOR_ID,
    timings: { updateMs: config.LOCK_UPDATE_MS, safetyMarginMs: config.LOCK_SAFETY_MARGIN_MS },
  }).run();
  for (const advice of report.results.filter((r) => !r.ok && r.advisory))
    logger.warn(
      { probe: advice.probe, detail: advice.detail, fix: advice.fix },
      'CACHE_ROOT check: advisory',
    );
  const view = cacheRootCheckView(report);
  if (report.failures.length === 0) {
    logger.info(
      {
        visibilityMs: report.visibilityMs,
        mtimePrecisionMs: report.mtimePrecisionMs,
        attributeCacheMs: report.attributeCacheMs,
        attributeCacheSource: report.attributeCacheSource,
      },
      'CACHE_ROOT check passed',
    );
    return view;
  }
  const message = describeRefusal(config.CACHE_ROOT, report.failures);
  if (config.CACHE_ROOT_CHECK === 'refuse') {
    process.stderr.write(`conductor: ${message}\n`);
    process.exit(EXIT_CONFIG);
  }
  logger.warn({ failures: report.failures }, `UNSAFE: CACHE_ROOT_CHECK=warn, starting although ${message}`);
  return view;
}

/**
 * Refuses to join a cell whose live conductors this release cannot run beside: one older than the previous
 * release, or one writing shared files in a newer format than this release reads (docs/upgrades.md).
 */
async function checkCellReleases(config: ConductorConfig): Promise<void> {
  const release = readReleaseInfo();
  const entries = await new ConductorRecords(config.CACHE_ROOT).list();
  const refusal = startRefusal(judgeConductors(entries, Date.now(), config.CONDUCTOR_DEAD_MS), {
    conductorId: config.CONDUCTOR_ID,
    version: release.version,
    previousVersion: release.previous?.version ?? null,
    protocols: PROTOCOLS,
  });
  if (refusal === undefined) return;
  process.stderr.write(`conductor: ${refusal}\n`);
  process.exit(EXIT_CONFIG);
}

/** Runs the conductor; a failure to start ends the process with code 1. */
export function main(seams: ConductorSeams = {}): void {
  runConductor(seams).catch((error: unknown) => {
    process.stderr.write(
      `conductor: failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}

if (require.main === module) main();
