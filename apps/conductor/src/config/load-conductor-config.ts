import { CredentialFileError, readSecretText } from '@app/credentials';
import { lockTimingProblems } from '@app/locking';
import type { z } from 'zod';
import { CONFIG_VARIABLES, type ConductorConfig } from './conductor-config';
import { tlsSettingProblems } from './tls-settings';

type Vars = typeof CONFIG_VARIABLES;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

function redacted(spec: object, raw: string | undefined): string | undefined {
  const redact = (spec as { redact?: (value: string) => string }).redact;
  return raw !== undefined && redact ? redact(raw) : raw;
}

/**
 * The value of `name`, or of the file `<name>_FILE` names (its one line, read with the checks of
 * readSecretText: never world-readable). Both set is a mistake, since either could be the stale one.
 */
function secretFromFile(
  name: string,
  env: NodeJS.ProcessEnv,
): { raw: string | undefined; label: string } | { problem: string } {
  const fileSetting = `${name}_FILE`;
  const file = env[fileSetting];
  if (file === undefined || file === '') return { raw: env[name], label: name };
  if (env[name] !== undefined && env[name] !== '')
    return { problem: `${name} and ${fileSetting} are both set: set only one of them` };
  try {
    return { raw: readSecretText(fileSetting, file), label: `${name} (from ${fileSetting}=${file})` };
  } catch (error) {
    if (error instanceof CredentialFileError) return { problem: error.message };
    throw error;
  }
}

/** Reads and validates the environment; throws a ConfigError naming every bad variable and why. */
export function loadConductorConfig(env: NodeJS.ProcessEnv = process.env): ConductorConfig {
  const problems: string[] = [];
  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(CONFIG_VARIABLES) as [keyof Vars, Vars[keyof Vars]][]) {
    const given = 'fromFile' in spec ? secretFromFile(name, env) : { raw: env[name], label: name };
    if ('problem' in given) {
      problems.push(given.problem);
      continue;
    }
    const { raw, label } = given;
    const fallback = typeof spec.default === 'function' ? spec.default() : spec.default;
    const value = raw === undefined || raw === '' ? fallback : raw;
    if (value === undefined && !(spec.schema as z.ZodType).safeParse(undefined).success) {
      problems.push(`${name}: is required (${spec.doc})`);
      continue;
    }
    const result = (spec.schema as z.ZodType).safeParse(value);
    if (result.success) config[name] = result.data;
    else
      problems.push(
        `${label}=${'secret' in spec ? '(redacted)' : JSON.stringify(redacted(spec, raw))}: ${result.error.issues.map((i) => i.message).join('; ')}`,
      );
  }
  if (problems.length === 0) problems.push(...relationProblems(config as ConductorConfig));
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ConductorConfig;
}

/** What is wrong between settings that are each valid alone. */
function relationProblems(c: ConductorConfig): string[] {
  const problems = [...tlsSettingProblems(c)];
  problems.push(
    ...lockTimingProblems(
      {
        staleMs: c.LOCK_STALE_MS,
        updateMs: c.LOCK_UPDATE_MS,
        safetyMarginMs: c.LOCK_SAFETY_MARGIN_MS,
        pollMs: c.LOCK_POLL_MS,
      },
      {
        staleMs: 'LOCK_STALE_MS',
        updateMs: 'LOCK_UPDATE_MS',
        safetyMarginMs: 'LOCK_SAFETY_MARGIN_MS',
        pollMs: 'LOCK_POLL_MS',
      },
    ),
  );
  if (c.CONDUCTOR_DEAD_MS < 3 * c.CONDUCTOR_BEAT_MS)
    problems.push(
      `CONDUCTOR_DEAD_MS=${c.CONDUCTOR_DEAD_MS}: must be at least 3 × CONDUCTOR_BEAT_MS (${3 * c.CONDUCTOR_BEAT_MS})`,
    );
  const hangExitMs = c.CACHE_ROOT_HANG_EXIT_MS;
  if (hangExitMs !== undefined && hangExitMs !== 0 && hangExitMs < c.LOCK_STALE_MS)
    problems.push(
      `CACHE_ROOT_HANG_EXIT_MS=${hangExitMs}: must be 0 (never) or at least LOCK_STALE_MS (${c.LOCK_STALE_MS})`,
    );
  const delays = c.RETRY_DELAYS_MS;
  if (delays.some((d, i) => i > 0 && d <= delays[i - 1]!))
    problems.push('RETRY_DELAYS_MS: must be strictly ascending');
  return problems;
}
