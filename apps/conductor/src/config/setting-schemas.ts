import { z } from 'zod';

/* The value shapes several settings of conductor-config.ts share: whole numbers in a range, lists, flags, URLs, files. */

export const integer = (min: number, max: number) =>
  z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

export const msList = z.string().transform((s, ctx) => {
  const parts = s.split(',').map((p) => Number(p.trim()));
  if (parts.length === 0 || parts.some((n) => !Number.isInteger(n) || n < 1)) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a comma-separated list of positive whole milliseconds, e.g. 1000,5000,30000',
    });
    return z.NEVER;
  }
  return parts;
});

export const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false (also 1/0, yes/no)' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

export const originUrlTemplate = z
  .string()
  .regex(/^https?:\/\/[^/\s]+/, 'must be an http:// or https:// URL')
  .refine((t) => t.includes('{imageId}'), 'must contain {imageId} (where the image id goes)')
  .refine((t) => URL.canParse(t.replaceAll('{imageId}', 'x')), 'is not a valid URL');

/** `Name: value`; the value is a secret and never shown. */
export const authHeader = z.string().transform((s, ctx) => {
  const match = /^([A-Za-z0-9-]+):[ \t]*(\S.*)$/.exec(s);
  if (!match) {
    ctx.addIssue({ code: 'custom', message: 'must be "Name: value", e.g. "X-Auth-Token: <token>"' });
    return z.NEVER;
  }
  return { name: match[1]!, value: match[2]! };
});

/** A file named by a setting; its content is checked after the whole environment (tls-settings.ts). */
export const filePath = z
  .string()
  .min(1, 'must not be empty')
  .refine((p) => p.startsWith('/'), 'must be an absolute path');
