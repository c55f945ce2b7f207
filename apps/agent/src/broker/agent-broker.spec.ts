import { describe, expect, it } from 'vitest';
import { describeAmqpError } from './agent-broker';

describe('describeAmqpError', () => {
  it("says access refused for the broker's 403 reply", () => {
    const refused = new Error(
      'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"',
    );
    expect(describeAmqpError(refused)).toBe('access refused: check the user and password in the URL');
  });

  // Seen in the full suite (test/broker-tls.e2e-spec.ts): a private broker on port 40303.
  it('keeps any other error as it is, also when the broker address has "403" in its port', () => {
    const untrusted = new Error(
      'TLS: the certificate of the broker at 127.0.0.1:40303 is not trusted (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain); check the CA file',
    );
    expect(describeAmqpError(untrusted)).toBe(untrusted.message);
  });
});
