import type { Server as TlsServer } from 'node:tls';
import type { Logger as PinoLogger } from 'pino';
import type { CertificateAndKey } from '@app/credentials';

/**
 * Serves a renewed admin certificate without a restart: on SIGHUP the files are read and checked again
 * (`load`), and `setSecureContext` gives the new pair to every later handshake. Open connections keep
 * theirs and nothing else stops: copies, the consumer and the locks do not notice. A bad new pair is
 * logged and the old one stays in use, so a botched renewal never takes the endpoint down. Without
 * admin TLS the handler only logs: SIGHUP (`systemctl reload`) never ends the conductor.
 * Returns the function that removes the handler.
 */
export function reloadAdminTlsOnSighup(
  server: TlsServer,
  load: () => CertificateAndKey | undefined,
  logger: PinoLogger,
): () => void {
  const onHangup = () => {
    try {
      const pair = load();
      if (!pair) {
        logger.info({}, 'SIGHUP: nothing to re-read (ADMIN_TLS_CERT_FILE unset); work goes on');
        return;
      }
      server.setSecureContext({ cert: pair.cert, key: pair.key });
      logger.info({ subject: pair.subject, validTo: pair.validTo }, 'admin TLS certificate reloaded');
    } catch (error) {
      logger.error(
        { err: { message: (error as Error).message } },
        'admin TLS certificate not reloaded: the previous one stays in use',
      );
    }
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}
