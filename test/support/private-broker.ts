import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import { afterAll } from 'vitest';
import { freePort } from './free-port';
import { makeTempDir, removeDir } from './temp-dirs';

const run = promisify(execFile);

/**
 * The folder of RabbitMQ's real scripts. Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to
 * the rabbitmq user and resets HOME (so its cookie would be the default node's): we call the scripts it
 * wraps, which sit beside it, with our own environment.
 */
function rabbitmqBinDir(): string {
  for (const dir of (process.env.PATH ?? '')
    .split(path.delimiter)
    .concat(['/usr/sbin', '/usr/lib/rabbitmq/bin'])) {
    const candidate = path.join(dir, 'rabbitmq-server');
    if (!existsSync(candidate)) continue;
    const real = path.dirname(realpathSync(candidate));
    if (
      ['rabbitmq-server', 'rabbitmqctl', 'rabbitmq-diagnostics'].every((s) => existsSync(path.join(real, s)))
    )
      return real;
  }
  throw new Error(
    'rabbitmq-server is not installed (not on PATH, nor in /usr/lib/rabbitmq/bin): install it, e.g. `apt-get install rabbitmq-server`, to run tests that need a broker of their own',
  );
}

/** An Erlang cookie of our own: a node with it can never talk to the machine's default node. */
export function newErlangCookie(): string {
  return Array.from(randomBytes(20), (b) => String.fromCharCode(65 + (b % 26))).join('');
}

/** A TLS listener for a private node: its certificate files and what it asks of clients. */
export interface BrokerTlsListener {
  /** The CA the node checks client certificates against (PEM file). */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Refuse a client that shows no certificate (RabbitMQ's fail_if_no_peer_cert). Default false. */
  requireClientCert?: boolean;
  /**
   * Enable the rabbitmq_auth_mechanism_ssl plugin (this node's own enabled-plugins file only) and the
   * EXTERNAL mechanism, mapping a client certificate's CN to a user (create it with ctl add_user).
   */
  external?: boolean;
}

export interface PrivateBrokerOptions {
  /** The AMQP listeners' address (another than 127.0.0.1 lets guest log in from there too). */
  listenAddress?: string;
  /** The Erlang cookie, shared by the nodes of one private cluster (never the machine's). */
  cookie?: string;
  /** An amqps:// listener beside the plain one (which the start-up check and ctl-side helpers use). */
  tls?: BrokerTlsListener;
}

/**
 * An extra RabbitMQ node for one test file, which the test may disturb (memory alarms, stops) without
 * touching the shared broker: its own node name (icc-t-<random>@localhost), AMQP and distribution ports,
 * config, env file, plugin list, data and log folders, and HOME with an Erlang cookie of its own, so it
 * cannot cluster with, nor be reached by the CLI of, any other node. Everything lives in one temp folder,
 * removed by stop().
 */
export class PrivateBroker {
  private exited: Promise<void>;

  private constructor(
    readonly nodeName: string,
    /** The address its AMQP listener is on (127.0.0.1 unless a bed gave another). */
    readonly host: string,
    readonly amqpPort: number,
    /** The amqps:// port, when started with `tls`. */
    readonly tlsPort: number | undefined,
    readonly distPort: number,
    readonly base: string,
    private readonly bin: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly server: ChildProcess,
    private readonly output: string[],
  ) {
    this.exited = new Promise((resolve) => server.once('exit', () => resolve()));
  }

  get url(): string {
    return `amqp://guest:guest@${this.host}:${this.amqpPort}`;
  }

  /** The amqps:// URL of the TLS listener (`user` '' for an EXTERNAL login: no user, no password). */
  tlsUrl(user = 'guest:guest'): string {
    if (this.tlsPort === undefined) throw new Error(`${this.nodeName} has no TLS listener`);
    return `amqps://${user ? `${user}@` : ''}${this.host}:${this.tlsPort}`;
  }

  static async start(startTimeoutMs = 120_000, options: PrivateBrokerOptions = {}): Promise<PrivateBroker> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await PrivateBroker.startOnce(startTimeoutMs, options);
      } catch (error) {
        // freePort() closes the port it found before the node binds it: another node starting at the same
        // time (a cluster's, another file's) may take it first. Seen: dist_port_already_used.
        const collided = /dist_port_already_used|eaddrinuse/i.test((error as Error).message);
        if (!collided || attempt >= 3) throw error;
      }
    }
  }

  private static async startOnce(
    startTimeoutMs: number,
    options: PrivateBrokerOptions,
  ): Promise<PrivateBroker> {
    const bin = rabbitmqBinDir();
    const base = await makeTempDir('broker');
    const id = randomBytes(4).toString('hex');
    const nodeName = `icc-t-${id}@localhost`;
    const host = options.listenAddress ?? '127.0.0.1';
    const [amqpPort, distPort] = [await freePort(), await freePort()];
    const tls = options.tls;
    const tlsPort = tls ? await freePort() : undefined;
    const home = path.join(base, 'home');
    await fsp.mkdir(home);
    await fsp.mkdir(path.join(base, 'log'));
    const cookie = options.cookie ?? newErlangCookie();
    await fsp.writeFile(path.join(home, '.erlang.cookie'), cookie, { mode: 0o400 });
    await fsp.writeFile(
      path.join(base, 'rabbitmq.conf'),
      [
        `listeners.tcp.1 = ${host}:${amqpPort}`,
        ...(host === '127.0.0.1' ? [] : ['loopback_users = none']),
        'disk_free_limit.absolute = 1MB',
        'log.console = false',
        'log.file.level = info',
        ...(tls ? tlsListenerConfig(tls, `${host}:${tlsPort}`) : []),
        '',
      ].join('\n'),
    );
    await fsp.writeFile(path.join(base, 'rabbitmq-env.conf'), '');
    await fsp.writeFile(
      path.join(base, 'enabled_plugins'),
      tls?.external ? '[rabbitmq_auth_mechanism_ssl].\n' : '[].\n',
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: home,
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_NODE_IP_ADDRESS: host,
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_CONFIG_FILE: path.join(base, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(base, 'advanced.config'),
      RABBITMQ_CONF_ENV_FILE: path.join(base, 'rabbitmq-env.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(base, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: path.join(base, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(base, 'log'),
      RABBITMQ_PID_FILE: path.join(base, 'rabbitmq.pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    // Its own process group, so that a stop that fails can kill the script and the Erlang VM together.
    const server = spawn(path.join(bin, 'rabbitmq-server'), [], {
      env,
      cwd: base,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    server.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    server.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    const broker = new PrivateBroker(
      nodeName,
      host,
      amqpPort,
      tlsPort,
      distPort,
      base,
      bin,
      env,
      server,
      output,
    );
    try {
      await broker.waitUntilRunning(startTimeoutMs);
    } catch (error) {
      await broker.stop().catch(() => undefined);
      throw new Error(
        `private RabbitMQ node ${nodeName} did not start: ${(error as Error).message}\n${output.join('').slice(-3000)}`,
      );
    }
    return broker;
  }

  /** rabbitmqctl against this node only (its cookie, its name). */
  async ctl(args: string[], timeoutMs = 60_000): Promise<string> {
    const { stdout } = await run(path.join(this.bin, 'rabbitmqctl'), ['-n', this.nodeName, '-q', ...args], {
      env: this.env,
      timeout: timeoutMs,
    });
    return stdout;
  }

  private async waitUntilRunning(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exitedEarly = false;
    void this.exited.then(() => (exitedEarly = true));
    for (;;) {
      if (exitedEarly) throw new Error(`rabbitmq-server exited (code ${this.server.exitCode})`);
      const pinged = await run(
        path.join(this.bin, 'rabbitmq-diagnostics'),
        ['-n', this.nodeName, '-q', 'ping'],
        { env: this.env, timeout: 20_000 },
      ).then(
        () => true,
        () => false,
      );
      if (pinged) break;
      if (Date.now() > deadline)
        throw new Error(`no answer to rabbitmq-diagnostics ping within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await this.ctl(['await_startup'], Math.max(10_000, deadline - Date.now()));
    const connection = await connect(this.url, { timeout: 10_000 });
    await connection.close();
  }

  /** Stops the node (rabbitmqctl stop, else SIGKILL of its process group) and removes its folder. */
  async stop(): Promise<void> {
    if (this.server.exitCode === null && this.server.signalCode === null) {
      await this.ctl(['stop'], 60_000).catch(() => undefined);
      const gone = await Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 30_000)),
      ]);
      if (!gone && this.server.pid !== undefined) {
        try {
          process.kill(-this.server.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        await this.exited;
      }
    }
    await removeDir(this.base);
  }
}

/** rabbitmq.conf lines of an amqps:// listener (RabbitMQ's "TLS Support" guide). */
function tlsListenerConfig(tls: BrokerTlsListener, address: string): string[] {
  return [
    `listeners.ssl.default = ${address}`,
    `ssl_options.cacertfile = ${tls.caFile}`,
    `ssl_options.certfile = ${tls.certFile}`,
    `ssl_options.keyfile = ${tls.keyFile}`,
    'ssl_options.verify = verify_peer',
    `ssl_options.fail_if_no_peer_cert = ${tls.requireClientCert ? 'true' : 'false'}`,
    ...(tls.external
      ? [
          'auth_mechanisms.1 = PLAIN',
          'auth_mechanisms.2 = AMQPLAIN',
          'auth_mechanisms.3 = EXTERNAL',
          'ssl_cert_login_from = common_name',
        ]
      : []),
  ];
}

/**
 * One private broker for a test file, started by the first call of the returned function (inside a test,
 * so a failure to start fails that test rather than skipping it) and stopped in afterAll.
 */
export function usePrivateBroker(
  options?: () => Promise<PrivateBrokerOptions>,
): () => Promise<PrivateBroker> {
  let started: Promise<PrivateBroker> | undefined;
  afterAll(async () => {
    const broker = await started?.catch(() => undefined);
    await broker?.stop();
  }, 90_000);
  return () => (started ??= (options ?? (async () => ({})))().then((o) => PrivateBroker.start(120_000, o)));
}
