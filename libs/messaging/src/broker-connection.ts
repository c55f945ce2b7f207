import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { type CellTopology, cellQueues, type Logger } from '@app/contracts';
import { type BrokerAuth, type BrokerTls, brokerSocketOptions, describeTlsFailure } from './broker-tls';
import { BrokerRotation, brokerAddress, parseBrokerUrls } from './broker-urls';
import { declareCellTopology } from './declare-topology';
import { BrokerUnavailableError, MessagingClosedError, isNotFound, redactUrl } from './errors';
import { defaultLogger, errorFields } from './logger';
import { TypedEvents } from './typed-events';

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

/** What the connection knows about its topology's health, for status pages. */
export interface TopologyHealth {
  /** Re-declarations after something was found missing (the declaration of each (re)connect is not counted). */
  redeclarations: number;
  /** Why the last re-declaration happened (e.g. `consumer of icc.c.requests cancelled by the server`). */
  lastCause: string | null;
  lastRedeclaredAt: string | null;
  /** Re-declarations that failed (not connected, refused); retried at the next report or check. */
  failures: number;
  lastError: string | null;
  /**
   * Per queue or exchange found missing (deleted under us), the re-declarations it caused and the last
   * one. What a queue held when it was deleted is gone with it.
   */
  missing: Record<string, { redeclarations: number; lastCause: string; lastAt: string }>;
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

export interface LiveModel {
  readonly model: ChannelModel;
  readonly generation: number;
}

/**
 * One AMQP connection that keeps itself alive, over a list of brokers.
 *
 * Recovery is our own loop, not amqplib 2.x's `recovery` option: that one dials the one URL it was given
 * for ever, so it cannot leave a stopped cluster node for another. Each attempt is a plain amqplib
 * `connect()` to the URL BrokerRotation names (the next of the list after each failure or loss, with
 * exponential backoff, jitter and a cap; never gives up), followed by the declaration of the cell
 * topology on a throwaway channel: if that fails the attempt counts as failed, so `connected` always
 * means "topology is in place". Channels belong to one underlying connection, so Publisher, Consumer and
 * ReplyQueue open theirs from `current()` and listen to `connected` to re-open them (the `generation`
 * tells a channel of the current connection from a dead one). Every connection gets an `error` listener
 * at once: an unhandled 'error' event would throw inside amqplib's socket handling.
 */
export class BrokerConnection {
  private readonly events: TypedEvents<BrokerConnectionEvents>;
  /** Also the default logger of the Publishers and Consumers built on this connection. */
  readonly logger: Logger;
  private readonly topologies: readonly CellTopology[];
  private readonly urls: readonly string[];
  private rotation: BrokerRotation | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** The model of the attempt in progress, so close() can close it too. */
  private dialling: ChannelModel | undefined;
  private endpoint:
    { url: string; index: number; clusterName: string | null; version: string | null } | undefined;
  private live: LiveModel | undefined;
  private stateValue: ConnectionState = 'connecting';
  private generationValue = 0;
  private reconnectCount = 0;
  private lastErrorValue: Error | undefined;
  private blockedValue: { reason: string; since: string } | undefined;
  private repairing: Promise<void> | undefined;
  private readonly health: TopologyHealth = {
    redeclarations: 0,
    lastCause: null,
    lastRedeclaredAt: null,
    failures: 0,
    lastError: null,
    missing: {},
  };
  /** Names reported missing since the last declaration: counted once each when it is declared again. */
  private readonly reportedMissing = new Map<string, string>();
  private checkTimer: NodeJS.Timeout | undefined;
  private checking = false;
  private readonly waiters = new Set<{
    resolve: (live: LiveModel) => void;
    reject: (error: Error) => void;
  }>();

  constructor(private readonly options: BrokerConnectionOptions) {
    this.logger = options.logger ?? defaultLogger();
    this.events = new TypedEvents(this.logger);
    this.topologies = options.topologies ?? [];
    // A malformed list is a programming or configuration error: configs validate it earlier, with names.
    this.urls = typeof options.url === 'string' ? parseBrokerUrls(options.url) : [...options.url];
    if (this.urls.length === 0) throw new Error('BrokerConnection needs at least one broker URL');
  }

  /** Which broker of the list this connection is on (or was on last), password redacted. */
  endpointView(): BrokerEndpointView {
    const at = this.endpoint;
    return {
      url: at ? redactUrl(at.url) : null,
      address: at ? brokerAddress(at.url) : null,
      position: at ? at.index + 1 : null,
      brokers: this.urls.length,
      clusterName: at?.clusterName ?? null,
      version: at?.version ?? null,
    };
  }

  /** The broker list, passwords redacted. */
  get brokerUrls(): string[] {
    return this.urls.map(redactUrl);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** Successful connections after the first one. */
  get reconnects(): number {
    return this.reconnectCount;
  }

  get generation(): number {
    return this.generationValue;
  }

  get lastError(): Error | undefined {
    return this.lastErrorValue;
  }

  get connectionName(): string {
    return this.options.connectionName;
  }

  /**
   * True while the broker blocks this connection (memory or disk alarm): it reads nothing from us, so any
   * publish, channel opening or declaration waits until the alarm clears. Read it; never ask the broker.
   */
  get blocked(): boolean {
    return this.blockedValue !== undefined;
  }

  blockedView(): BlockedView {
    return {
      blocked: this.blockedValue !== undefined,
      reason: this.blockedValue?.reason ?? null,
      since: this.blockedValue?.since ?? null,
    };
  }

  topologyHealth(): TopologyHealth {
    return { ...this.health, missing: { ...this.health.missing } };
  }

  /**
   * Declares the whole topology again because `cause` showed part of it missing (a queue deleted under
   * us). Concurrent reports share one declaration. Resolves once declared; rejects if not connected within
   * `timeoutMs` or if the broker refuses (recorded in topologyHealth(); the caller retries later).
   * `missing`: the queue or exchange found missing, when the reporter knows it (its history is kept).
   */
  repairTopology(cause: string, timeoutMs = 10_000, missing?: string): Promise<void> {
    if (missing !== undefined && !this.reportedMissing.has(missing)) this.reportedMissing.set(missing, cause);
    this.repairing ??= this.redeclare(cause, timeoutMs).finally(() => {
      this.repairing = undefined;
    });
    return this.repairing;
  }

  private async redeclare(cause: string, timeoutMs: number): Promise<void> {
    try {
      const { model } = await this.waitForLive(timeoutMs);
      await this.declareTopologies(model);
    } catch (error) {
      this.health.failures += 1;
      this.health.lastError = `${cause}: ${errorFields(error).err.message}`;
      this.logger.warn({ cause, ...errorFields(error) }, 'could not declare the topology again');
      throw error;
    }
    this.health.redeclarations += 1;
    this.health.lastCause = cause;
    this.health.lastRedeclaredAt = new Date().toISOString();
    const missing = [...this.reportedMissing.keys()];
    this.recordMissing();
    this.logger.warn(
      { cause, missing, redeclarations: this.health.redeclarations },
      'topology declared again',
    );
    this.events.emit('topology-redeclared', { cause, redeclarations: this.health.redeclarations, missing });
  }

  /** Moves the names reported missing into the per-name history; a lost queue's loss is logged. */
  private recordMissing(): void {
    const queues = new Set(this.topologies.flatMap((t) => cellQueues(t).map((q) => q.name)));
    for (const [name, cause] of this.reportedMissing) {
      const seen = this.health.missing[name];
      this.health.missing[name] = {
        redeclarations: (seen?.redeclarations ?? 0) + 1,
        lastCause: cause,
        lastAt: this.health.lastRedeclaredAt!,
      };
      if (queues.has(name))
        this.logger.warn(
          { queue: name, cause, times: this.health.missing[name].redeclarations },
          'a queue was deleted: the messages it held are gone; their requesters get no answer unless they send them again (same requestId)',
        );
    }
    this.reportedMissing.clear();
  }

  /** One passive check of every queue and exchange; a missing one is repaired. Skipped while blocked. */
  private async checkTopology(): Promise<void> {
    const live = this.current();
    if (!live || this.blocked || this.checking || this.repairing) return;
    this.checking = true;
    let missing: string | undefined;
    let missingName: string | undefined;
    try {
      const channel = await live.model.createChannel();
      channel.on('error', () => {}); // a 404 rejects the awaited check; the event needs a listener
      try {
        for (const topology of this.topologies) {
          for (const queue of cellQueues(topology)) {
            missing = `passive check: queue ${queue.name} not found`;
            missingName = queue.name;
            await channel.checkQueue(queue.name);
          }
          missing = `passive check: exchange ${topology.eventsExchange.name} not found`;
          missingName = topology.eventsExchange.name;
          await channel.checkExchange(topology.eventsExchange.name);
        }
        missing = undefined;
        await channel.close();
      } catch (error) {
        if (!isNotFound(error)) missing = undefined;
        channel.close().catch(() => {});
        if (!missing) throw error;
      }
    } catch (error) {
      this.logger.debug({ ...errorFields(error) }, 'topology check failed (connection busy or lost)');
    } finally {
      this.checking = false;
    }
    if (missing) await this.repairTopology(missing, undefined, missingName).catch(() => {});
  }

  on<K extends keyof BrokerConnectionEvents>(
    event: K,
    listener: (payload: BrokerConnectionEvents[K]) => void,
  ): () => void {
    return this.events.on(event, listener);
  }

  /** Starts connecting in the background (idempotent). Use waitUntilConnected() to wait for it. */
  start(): this {
    if (this.rotation || this.stateValue === 'closed') return this;
    const checkMs = this.options.topologyCheckMs ?? 0;
    if (checkMs > 0 && this.topologies.length > 0) {
      this.checkTimer = setInterval(() => void this.checkTopology(), checkMs);
      this.checkTimer.unref();
    }
    const reconnect = this.options.reconnect ?? {};
    this.rotation = new BrokerRotation(this.urls, {
      initialDelayMs: reconnect.initialDelayMs ?? 200,
      maxDelayMs: reconnect.maxDelayMs ?? 10_000,
      jitter: reconnect.jitter ?? 0.5,
    });
    const { url, index } = this.rotation.first();
    // Deferred, so that listeners attached right after start() see the first attempt's events.
    setImmediate(() => void this.attempt(url, index));
    return this;
  }

  /** One attempt: connect to `url`, declare the topology, announce it; on failure the next is scheduled. */
  private async attempt(url: string, index: number): Promise<void> {
    if (this.isClosed()) return;
    let model: ChannelModel | undefined;
    try {
      model = await (this.options.connect ?? connect)(
        withHeartbeat(url, this.options.heartbeatSeconds ?? 10),
        {
          ...brokerSocketOptions(this.options.tls, this.options.auth ?? 'plain'),
          clientProperties: { connection_name: this.options.connectionName },
          timeout: this.options.connectTimeoutMs ?? 10_000,
        },
      );
      this.dialling = model;
      model.on('error', (error: Error) => {
        this.lastErrorValue = error;
        this.logger.warn({ ...errorFields(error), url: redactUrl(url) }, 'RabbitMQ connection error');
      });
      if (!this.isClosed()) await this.declareTopologies(model);
      this.dialling = undefined;
      if (this.isClosed()) {
        await model.close().catch(() => {});
        return;
      }
      this.bind(model, url, index);
      this.rotation?.succeeded();
      this.onConnect(model);
    } catch (caught) {
      this.dialling = undefined;
      const error = describeTlsFailure(caught instanceof Error ? caught : new Error(String(caught)), url);
      if (model) await model.close().catch(() => {});
      if (this.isClosed()) return;
      this.lastErrorValue = error;
      this.logger.warn({ ...errorFields(error), url: redactUrl(url) }, 'RabbitMQ connection attempt failed');
      this.events.emit('connect-failed', { error, url: redactUrl(url) });
      this.scheduleNext(error);
    }
  }

  /** A method, not a narrowed field read: close() may run while an attempt awaits. */
  private isClosed(): boolean {
    return this.stateValue === 'closed';
  }

  private scheduleNext(reason: Error): void {
    if (this.stateValue === 'closed' || this.reconnectTimer || !this.rotation) return;
    const { url, index, delayMs, attempt } = this.rotation.next();
    this.logger.info({ attempt, delayMs, url: redactUrl(url) }, 'reconnecting to RabbitMQ');
    this.events.emit('reconnect-scheduled', { attempt, delayMs, reason, url: redactUrl(url) });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.attempt(url, index);
    }, delayMs);
  }

  /** The current connection, if connected. */
  current(): LiveModel | undefined {
    return this.stateValue === 'connected' ? this.live : undefined;
  }

  /** Resolves with the live connection, or rejects with BrokerUnavailableError after `timeoutMs`. */
  waitForLive(timeoutMs: number): Promise<LiveModel> {
    const live = this.current();
    if (live) return Promise.resolve(live);
    if (this.stateValue === 'closed') return Promise.reject(new MessagingClosedError('BrokerConnection'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (l: LiveModel) => {
          clearTimeout(timer);
          resolve(l);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const cause = this.lastErrorValue ? `: ${this.lastErrorValue.message}` : '';
        reject(
          new BrokerUnavailableError(
            `not connected to RabbitMQ at ${this.brokerUrls.join(', ')} within ${timeoutMs} ms ` +
              `(state ${this.stateValue})${cause}`,
            { cause: this.lastErrorValue },
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  async waitUntilConnected(timeoutMs: number): Promise<void> {
    await this.waitForLive(timeoutMs);
  }

  /** Opens a channel on the live connection (waiting up to `timeoutMs` for one). */
  async openChannel(timeoutMs: number): Promise<{ channel: Channel; generation: number }> {
    const { model, generation } = await this.waitForLive(timeoutMs);
    return { channel: await model.createChannel(), generation };
  }

  async openConfirmChannel(timeoutMs: number): Promise<{ channel: ConfirmChannel; generation: number }> {
    const { model, generation } = await this.waitForLive(timeoutMs);
    return { channel: await model.createConfirmChannel(), generation };
  }

  /**
   * Closes the connection and stops recovery. Channels die with it: unacked deliveries go back to their
   * queues. Stop consumers and wait for in-flight work first (Consumer.pause()/drain()).
   */
  async close(): Promise<void> {
    if (this.stateValue === 'closed') return;
    const model = this.live?.model ?? this.dialling;
    this.setClosed();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (!model) return;
    try {
      await model.close();
    } catch (error) {
      this.logger.warn({ ...errorFields(error) }, 'error while closing the broker connection');
    }
  }

  private async declareTopologies(model: ChannelModel): Promise<void> {
    if (this.topologies.length === 0) return;
    const channel = await model.createChannel();
    // Declaration errors reject the awaited call; the event only needs a listener so it does not throw.
    channel.on('error', () => {});
    for (const topology of this.topologies) await declareCellTopology(channel, topology);
    await channel.close();
  }

  private bind(model: ChannelModel, url: string, index: number): void {
    const server = model.connection.serverProperties as Record<string, unknown>;
    const text = (value: unknown) => (value === undefined || value === null ? null : String(value));
    this.endpoint = { url, index, clusterName: text(server.cluster_name), version: text(server.version) };
    model.on('close', (error?: Error) => {
      if (this.live?.model !== model) return;
      const reason = error ?? new Error('connection closed');
      this.onDisconnect(reason);
      this.scheduleNext(reason);
    });
    model.on('handler-error', (error: Error, event: string) => {
      this.logger.error({ ...errorFields(error), event }, 'a connection event listener threw');
    });
    model.on('blocked', (reason: string) => {
      this.blockedValue = { reason, since: new Date().toISOString() };
      this.logger.warn({ reason }, 'RabbitMQ blocked this connection (resource alarm)');
      this.events.emit('blocked', { reason });
    });
    model.on('unblocked', () => {
      this.blockedValue = undefined;
      this.logger.info({}, 'RabbitMQ unblocked this connection');
      this.events.emit('unblocked', {});
    });
  }

  private onConnect(model: ChannelModel): void {
    if (this.stateValue === 'closed') return;
    if (this.generationValue > 0) this.reconnectCount += 1;
    this.generationValue += 1;
    this.live = { model, generation: this.generationValue };
    this.stateValue = 'connected';
    this.blockedValue = undefined; // a new connection starts unblocked; the broker says so if not
    this.logger.info(
      {
        generation: this.generationValue,
        reconnects: this.reconnectCount,
        connectionName: this.options.connectionName,
        url: this.endpoint ? redactUrl(this.endpoint.url) : null,
      },
      'connected to RabbitMQ',
    );
    for (const waiter of [...this.waiters]) waiter.resolve(this.live);
    this.waiters.clear();
    this.events.emit('connected', { generation: this.generationValue, reconnects: this.reconnectCount });
  }

  private onDisconnect(reason: Error): void {
    if (this.stateValue === 'closed') return;
    this.live = undefined;
    this.stateValue = 'disconnected';
    this.blockedValue = undefined;
    this.lastErrorValue = reason;
    this.logger.warn({ ...errorFields(reason) }, 'lost the RabbitMQ connection');
    this.events.emit('disconnected', { reason });
  }

  private setClosed(error?: Error): void {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'closed';
    this.live = undefined;
    clearInterval(this.checkTimer);
    const rejection = error ?? new MessagingClosedError('BrokerConnection');
    for (const waiter of [...this.waiters]) waiter.reject(rejection);
    this.waiters.clear();
    this.events.emit('closed', {});
  }
}

/** heartbeat is a connection (URL) parameter in amqplib, not a socket option. */
function withHeartbeat(url: string, seconds: number): string {
  try {
    const parsed = new URL(url);
    if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(seconds));
    return parsed.toString();
  } catch {
    return url; // connect() reports the malformed URL
  }
}
