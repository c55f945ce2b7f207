import type { ChannelModel } from 'amqplib';
import { brokerAddress } from './broker-urls';
import { redactUrl } from './errors';

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface BrokerConnectionEvents {
  /** Topology declared; channels may be opened. `generation` increases on every (re)connect. */
  connected: { generation: number; reconnects: number };
  /** The connection was lost; recovery is scheduled. Channels of the old generation are dead. */
  disconnected: { reason: Error };
  /** An attempt failed (broker down, auth, or topology declaration refused); `url` is redacted. */
  'connect-failed': { error: Error; url: string };
  /** The next attempt, to `url` (redacted): the next broker of the list. */
  'reconnect-scheduled': { attempt: number; delayMs: number; reason: Error; url: string };
  /** The broker stopped reading from us (memory or disk alarm): publishes will wait. */
  blocked: { reason: string };
  unblocked: Record<string, never>;
  /** A queue or exchange of the topology was found missing and the whole topology was declared again. */
  'topology-redeclared': { cause: string; redeclarations: number; missing: string[] };
  closed: Record<string, never>;
}

export interface LiveModel {
  readonly model: ChannelModel;
  readonly generation: number;
}

/** Whether the broker stopped reading from this connection (resource alarm), and since when. */
export interface BlockedView {
  blocked: boolean;
  reason: string | null;
  since: string | null;
}

/** The broker this connection is on, for status pages: never a password. */
export interface BrokerEndpointView {
  /** The URL of the list it is connected to (or was last), password redacted; null before any. */
  url: string | null;
  /** `host:port` of that URL. */
  address: string | null;
  /** 1-based position of that URL in the broker list, and the list's length. */
  position: number | null;
  brokers: number;
  /** What the broker says of itself at the handshake (RabbitMQ: `cluster_name`, `version`). */
  clusterName: string | null;
  version: string | null;
}

/** The broker a connection reached: its URL, place in the list, and what it said of itself. */
export interface Endpoint {
  url: string;
  index: number;
  clusterName: string | null;
  version: string | null;
}

/** The endpoint of a connection to the `index`th URL, from the server properties of its handshake. */
export function endpointOf(url: string, index: number, serverProperties: Record<string, unknown>): Endpoint {
  const text = (value: unknown) => (value === undefined || value === null ? null : String(value));
  return {
    url,
    index,
    clusterName: text(serverProperties.cluster_name),
    version: text(serverProperties.version),
  };
}

/** What a status page shows of the endpoint (none yet: nulls) of a list of `brokers` URLs. */
export function endpointView(at: Endpoint | undefined, brokers: number): BrokerEndpointView {
  return {
    url: at ? redactUrl(at.url) : null,
    address: at ? brokerAddress(at.url) : null,
    position: at ? at.index + 1 : null,
    brokers,
    clusterName: at?.clusterName ?? null,
    version: at?.version ?? null,
  };
}

/** What a status page shows of a resource alarm (none: not blocked). */
export function blockedView(blocked: { reason: string; since: string } | undefined): BlockedView {
  return { blocked: blocked !== undefined, reason: blocked?.reason ?? null, since: blocked?.since ?? null };
}
