import { randomUUID } from 'node:crypto';
import {
  COPY_REQUEST_VERSION,
  type CopyRequest,
  MessageValidationError,
  cellIdSchema,
  parseCopyRequest,
} from '@app/contracts';
import { UsageError } from '../cli/exit-codes';

/** The copy command's flags as commander hands them over (strings, unvalidated). */
export interface CopyFlags {
  to: string;
  from?: string;
  sha256?: string;
  size?: string;
  requestId?: string;
}

/** Wire field → the flag a person typed, so a validation error names what they can fix. */
const FLAG_OF_FIELD: Record<string, string> = {
  imageId: '<imageId>',
  destination: '--to',
  source: '--from',
  sha256: '--sha256',
  size: '--size',
  requestId: '--request-id',
};

export function newRequestId(): string {
  return `icc-${randomUUID()}`;
}

/**
 * Builds a v1 copy request and validates it with the contracts' parser, exactly as the conductor will:
 * anything the conductor would refuse is refused here, before it reaches the broker, with the flag named.
 */
export function buildCopyRequest(
  imageId: string,
  flags: CopyFlags,
  requestId = flags.requestId ?? newRequestId(),
): CopyRequest {
  const candidate: Record<string, unknown> = {
    v: COPY_REQUEST_VERSION,
    requestId,
    imageId,
    destination: flags.to,
  };
  if (flags.from !== undefined) candidate.source = flags.from;
  if (flags.sha256 !== undefined) {
    // Accept upper-case hex from tools that print it so; the wire format wants lower case.
    candidate.sha256 = /^[0-9a-fA-F]{64}$/.test(flags.sha256) ? flags.sha256.toLowerCase() : flags.sha256;
  }
  if (flags.size !== undefined) candidate.size = parseSize(flags.size);
  try {
    return parseCopyRequest(candidate);
  } catch (error) {
    if (error instanceof MessageValidationError) {
      // Grouped by flag, the first flag leading: "--to: reason; reason; --size: reason".
      const byFlag = new Map<string, string[]>();
      for (const issue of error.issues) {
        const flag = FLAG_OF_FIELD[issue.field.split('.')[0]!] ?? issue.field;
        byFlag.set(flag, [...(byFlag.get(flag) ?? []), issue.reason]);
      }
      const [[flag, reasons], ...others] = [...byFlag];
      const rest = others.map(([f, r]) => `; ${f}: ${r.join('; ')}`).join('');
      throw new UsageError(flag!, `${reasons!.join('; ')}${rest}`);
    }
    throw error;
  }
}

function parseSize(raw: string): number {
  if (!/^\d+$/.test(raw.trim()))
    throw new UsageError('--size', `must be a whole number of bytes (got ${JSON.stringify(raw)})`);
  const size = Number(raw.trim());
  if (!Number.isSafeInteger(size)) throw new UsageError('--size', 'is too large');
  return size;
}

export function parseCellId(raw: string | undefined): string {
  if (raw === undefined || raw === '')
    throw new UsageError('--cell', 'is required: pass --cell <id> or set CELL_ID');
  const parsed = cellIdSchema.safeParse(raw);
  if (!parsed.success) throw new UsageError('--cell', parsed.error.issues.map((i) => i.message).join('; '));
  return parsed.data;
}

/** --timeout in seconds (decimals allowed), > 0. */
export function parseTimeoutSeconds(raw: string | undefined, fallbackSeconds: number): number {
  if (raw === undefined) return fallbackSeconds * 1000;
  const seconds = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(seconds) || seconds <= 0)
    throw new UsageError('--timeout', `must be a positive number of seconds (got ${JSON.stringify(raw)})`);
  return Math.round(seconds * 1000);
}
