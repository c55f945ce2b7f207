import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Logger } from '@app/contracts';
import { describeTlsFailure } from './broker-tls';
import { BrokerRotation } from './broker-urls';
import {
  type BrokerConnectionOptions,
  brokerList,
  dialSettings,
  reconnectPolicy,
} from './connection-settings';
import {
  type BlockedView,
  type BrokerConnectionEvents,
  type BrokerEndpointView,
  type ConnectionState,
  type Endpoint,
  type LiveModel,
  blockedView,
  endpointOf,
  endpointView,
} from './connection-views';
import { BrokerUnavailableError, MessagingClosedError, redactUrl } from './errors';
import { defaultLogger, errorFields } from './logger';
import { type TopologyHealth, TopologyKeeper } from './topology-keeper';
import { TypedEvents } from './typed-events';
import { Waiters } from './waiters';

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
  private readonly urls: readonly string[];
  private readonly topology: TopologyKeeper;
  private rotation: BrokerRotation | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** The model of the attempt in progress, so close() can close it too. */
  private dialling: ChannelModel | undefined;
  private endpoint: Endpoint | undefined;
  private live: LiveModel | undefined;
  private stateValue: ConnectionState = 'connecting';
  private generationValue = 0;
  private reconnectCount = 0;
  private lastErrorValue: Error | undefined;
  private blockedValue: { reason: string; since: string } | undefined;
  private readonly waiters = new Waiters<LiveModel>();

  constructor(private readonly options: BrokerConnectionOptions) {
    this.logger = options.logger ?? defaultLogger();
    this.events = new TypedEvents(this.logger);
    this.urls = brokerList(options);
    this.topology = new TopologyKeeper(options.topologies ?? [], {
      logger: this.logger,
      isBlocked: () => this.blocked,
      current: () => this.current(),
      waitForLive: (timeoutMs) => this.waitForLive(timeoutMs),
      announce: (redeclared) => this.events.emit('topology-redeclared', redeclared),
    });
  }

  /** Which broker of the list this connection is on (or was on last), password redacted. */
  endpointView(): BrokerEndpointView {
    return endpointView(this.endpoint, this.urls.length);
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
    return blockedView(this.blockedValue);
  }

  topologyHealth(): TopologyHealth {
    return this.topology.healthView();
  }

  /**
   * Declares the whole topology again because `cause` showed part of it missing (a queue deleted under
   * us). Concurrent reports share one declaration. Resolves once declared; rejects if not connected within
   * `timeoutMs` or if the broker refuses (recorded in topologyHealth(); the caller retries later).
   * `missing`: the queue or exchange found missing, when the reporter knows it (its history is kept).
   */
  repairTopology(cause: string, timeoutMs = 10_000, missing?: string): Promise<void> {
    return this.topology.repair(cause, timeoutMs, missing);
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
    this.topology.startChecks(this.options.topologyCheckMs ?? 0);
    this.rotation = new BrokerRotation(this.urls, reconnectPolicy(this.options.reconnect));
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
      const dial = dialSettings(this.options, url);
      model = await (this.options.connect ?? connect)(dial.url, dial.socketOptions);
      this.dialling = model;
      model.on('error', (error: Error) => {
        this.lastErrorValue = error;
        this.logger.warn({ ...errorFields(error), url: redactUrl(url) }, 'RabbitMQ connection error');
      });
      if (!this.isClosed()) await this.topology.declare(model);
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
    return this.waiters.wait(timeoutMs, () => {
      const cause = this.lastErrorValue ? `: ${this.lastErrorValue.message}` : '';
      return new BrokerUnavailableError(
        `not connected to RabbitMQ at ${this.brokerUrls.join(', ')} within ${timeoutMs} ms ` +
          `(state ${this.stateValue})${cause}`,
        { cause: this.lastErrorValue },
      );
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

  private bind(model: ChannelModel, url: string, index: number): void {
    this.endpoint = endpointOf(url, index, model.connection.serverProperties as Record<string, unknown>);
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
    this.waiters.resolveAll(this.live);
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
    this.topology.stopChecks();
    this.waiters.rejectAll(error ?? new MessagingClosedError('BrokerConnection'));
    this.events.emit('closed', {});
  }
}
