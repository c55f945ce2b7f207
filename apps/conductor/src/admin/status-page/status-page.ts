import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export interface StaticPage {
  body: string;
  headers: Record<string, string>;
}

/**
 * The live status page: one self-contained HTML file (inline CSS and vanilla JS, no external assets),
 * read once at start. It holds no data: its script fetches GET /status and GET /locks every second with
 * the token the operator put in the URL (see ../README.md). The Content-Security-Policy allows exactly
 * its own inline script and style (by hash) and fetches to this origin.
 */
export function loadStatusPage(file = path.join(__dirname, 'status-page.html')): StaticPage {
  const body = readFileSync(file, 'utf8');
  const hashes = (tag: 'script' | 'style') =>
    [...body.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))]
      .map((m) => `'sha256-${createHash('sha256').update(m[1]!, 'utf8').digest('base64')}'`)
      .join(' ');
  const csp = [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return {
    body,
    headers: {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Security-Policy': csp,
      'Referrer-Policy': 'no-referrer',
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Cache-Control': 'no-store',
    },
  };
}
