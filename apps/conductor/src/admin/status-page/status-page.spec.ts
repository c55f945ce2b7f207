import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadStatusPage } from './status-page';

describe('status page shell', () => {
  const page = loadStatusPage();

  it('allows exactly its own inline script and style through the Content-Security-Policy', () => {
    const csp = page.headers['Content-Security-Policy']!;
    const script = /<script>([\s\S]*?)<\/script>/.exec(page.body)![1]!;
    const style = /<style>([\s\S]*?)<\/style>/.exec(page.body)![1]!;
    const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    expect(csp).toContain(`script-src ${hash(script)}`);
    expect(csp).toContain(`style-src ${hash(style)}`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
  });

  it('loads nothing from elsewhere and carries no data', () => {
    expect(page.body).not.toMatch(/(src|href)=["']https?:/);
    expect(page.body).not.toMatch(/<script[^>]+src=/);
    expect(page.body).toContain("get('/status')");
    expect(page.body).toContain("get('/locks')");
    expect(page.headers['Referrer-Policy']).toBe('no-referrer');
    expect(page.headers['Cache-Control']).toBe('no-store');
  });
});
