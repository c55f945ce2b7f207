import { readFileSync } from 'node:fs';
import * as os from 'node:os';

/*
 * Where the CPU went during a stretch of a bench: the whole machine (/proc/stat) and named processes
 * (/proc/<pid>/stat, all their threads), in cores' worth of time (1 = one core busy the whole stretch).
 * The per-process figures hold on a shared machine too; the machine's include everyone else's work.
 */

/** Linux's USER_HZ: /proc times are in these ticks on every architecture Node runs on here. */
const TICKS_PER_SECOND = 100;
/** The default RabbitMQ node's pid file (Debian's package). */
const BROKER_PID_FILE = '/var/lib/rabbitmq/mnesia/rabbit@localhost.pid';

export interface CpuUse {
  cores: number;
  /** The whole machine: every process and the kernel. */
  machineBusyCores: number;
  /** Idle with I/O outstanding (fsync waits show here). */
  machineIowaitCores: number;
  /** Each named process, user + system time of all its threads. */
  processes: Record<string, number>;
}

function machineTicks(): { busy: number; idle: number; iowait: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields as number[];
  return { busy: user! + nice! + system! + irq! + softirq! + steal!, idle: idle!, iowait: iowait! };
}

function processTicks(pid: number): number {
  try {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return 0; // exited meanwhile
  }
}

/** The default RabbitMQ node's pid, if this machine runs one where Debian puts it. */
export function brokerPid(): number | undefined {
  try {
    return Number(readFileSync(BROKER_PID_FILE, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** Starts measuring; the returned function ends it. */
export function measureCpuUse(pids: Record<string, number | undefined>): () => CpuUse {
  const named = Object.entries(pids).filter((e): e is [string, number] => e[1] !== undefined);
  const startedAt = performance.now();
  const machineStart = machineTicks();
  const processStart = named.map(([, pid]) => processTicks(pid));
  return () => {
    const seconds = (performance.now() - startedAt) / 1000;
    const machine = machineTicks();
    const busy = machine.busy - machineStart.busy;
    const idle = machine.idle - machineStart.idle;
    const iowait = machine.iowait - machineStart.iowait;
    const total = busy + idle + iowait;
    const cores = os.cpus().length;
    const share = (x: number) => (total === 0 ? 0 : round2((x / total) * cores));
    const processes: Record<string, number> = {};
    named.forEach(([name, pid], i) => {
      processes[name] = round2((processTicks(pid) - processStart[i]!) / TICKS_PER_SECOND / seconds);
    });
    return { cores, machineBusyCores: share(busy), machineIowaitCores: share(iowait), processes };
  };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
