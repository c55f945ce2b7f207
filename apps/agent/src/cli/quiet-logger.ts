import type { Logger } from '@app/contracts';

/**
 * The messaging lib logs JSON lines through pino by default, which would mix with the CLI's own output
 * (and break --json). The agent reports failures itself, so the lib's log lines are only shown, on
 * stderr, when ICC_DEBUG is set.
 */
export function agentLogger(env: NodeJS.ProcessEnv = process.env): Logger {
  const debug = Boolean(env.ICC_DEBUG);
  const write = (level: string) => (obj: object, msg: string) => {
    if (debug) process.stderr.write(`[icc ${level}] ${msg} ${JSON.stringify(obj)}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
