import type { connect } from 'amqplib';
import type { CellTopology, Logger } from '@app/contracts';
import { type BrokerAuth, type BrokerTls, brokerSocketOptions } from './broker-tls';
import { type RotationOptions, parseBrokerUrls } from './broker-urls';

export interface ReconnectOptions {
  /** First delay after a loss; doubles per failed attempt. Default 200 ms. */
  initialDelayMs?: number;
  /** Cap of the delay, jitter included. Default 10 000 ms. */
  maxDelayMs?: number;
  /** Fraction (0..1) of random spread around each delay, so a fleet does not reconnect in lockstep. Default 0.5. */
  jitter?: number;
}

export interface BrokerConnectionOptions {
  /**
   * One broker URL, a comma-separated list of them, or an array (e.g. the nodes of a cluster). The first
   * that answers is used; after a loss the next ones are tried in turn (see BrokerRotation).
   */
  url: string | readonly string[];
  /**
   * Shown by the broker (management UI, `rabbitmqctl list_connections client_properties`), e.g.
   * `conductor-<id>`. It is how an operator, or a test, finds this process's connection.
   */
  connectionName: string;
  /** Declared on every (re)connect, before `connected` is emitted. */
  topologies?: readonly CellTopology[];
  reconnect?: ReconnectOptions;
  /** AMQP heartbeat: a dead peer is noticed after about two intervals. Default 10 s (RabbitMQ's is 60 s). */
  heartbeatSeconds?: number;
  /** TCP connect + handshake timeout of one attempt. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * Every this many ms, passive declares check that each queue and exchange of the topology still exists,
   * and a missing one makes the whole topology be declared again. Catches deletions nothing else would
   * notice soon (e.g. a dead-letter target nobody publishes to directly). 0 (default): no periodic check.
   */
  topologyCheckMs?: number;
  /** TLS material for the `amqps://` entries of the list (CA, client certificate, server name). */
  tls?: BrokerTls;
  /** `external`: log in with the client certificate (RabbitMQ's EXTERNAL mechanism). Default `plain`. */
  auth?: BrokerAuth;
  logger?: Logger;
  /** amqplib's `connect`; the seam through which fast specs drive the connection without a broker. */
  connect?: typeof connect;
}

/** What one attempt passes to amqplib's `connect`: the URL to dial and the socket options. */
export interface DialSettings {
  url: string;
  socketOptions: Record<string, unknown>;
}

/**
 * The broker list of the options. A malformed list is a programming or configuration error: configs
 * validate it earlier, with names.
 */
export function brokerList(options: Pick<BrokerConnectionOptions, 'url'>): string[] {
  const urls = typeof options.url === 'string' ? parseBrokerUrls(options.url) : [...options.url];
  if (urls.length === 0) throw new Error('BrokerConnection needs at least one broker URL');
  return urls;
}

/** The backoff between attempts, with the defaults filled in. */
export function reconnectPolicy(reconnect: ReconnectOptions = {}): RotationOptions {
  return {
    initialDelayMs: reconnect.initialDelayMs ?? 200,
    maxDelayMs: reconnect.maxDelayMs ?? 10_000,
    jitter: reconnect.jitter ?? 0.5,
  };
}

/** How one attempt dials `url`: its heartbeat, TLS and login, name shown by the broker, and timeout. */
export function dialSettings(options: BrokerConnectionOptions, url: string): DialSettings {
  return {
    url: withHeartbeat(url, options.heartbeatSeconds ?? 10),
    socketOptions: {
      ...brokerSocketOptions(options.tls, options.auth ?? 'plain'),
      clientProperties: { connection_name: options.connectionName },
      timeout: options.connectTimeoutMs ?? 10_000,
    },
  };
}

/** heartbeat is a connection (URL) parameter in amqplib, not a socket option; one in the URL is kept. */
export function withHeartbeat(url: string, seconds: number): string {
  try {
    const parsed = new URL(url);
    if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(seconds));
    return parsed.toString();
  } catch {
    return url; // connect() reports the malformed URL
  }
}
