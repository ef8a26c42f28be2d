// What a TLS failure means for federation, in an admin's words: turns Node/OpenSSL error
// codes (from a failed request or a socket's authorizationError) into a one-line summary
// and the likely fix. Returns null for errors that are not about TLS.

export interface TlsProblem {
  summary: string;
  fix: string;
}

const RENEW = 'renew the certificate: with fedtls\'s ACME, look for acme_order_failed in its log (journalctl -u fedtls) and check that port 80 of every name reaches fedtls; with files you manage, install the renewed fullchain.pem and run systemctl reload fedtls';

export function describeTlsError(error: { code?: string; message: string }, name: string): TlsProblem | null {
  const code = error.code ?? '';
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return { summary: 'the certificate has expired', fix: RENEW };
    case 'CERT_NOT_YET_VALID':
      return { summary: 'the certificate is not valid yet', fix: 'check the clock of the server (timedatectl), or wait until the certificate\'s start date' };
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      return {
        summary: 'the server sends its certificate without the intermediate certificate, so peers cannot build a chain to a trusted root',
        fix: 'serve the full chain: certificate_path must be fullchain.pem (the leaf followed by the intermediate), not cert.pem',
      };
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
      return {
        summary: 'the chain does not lead to a trusted root (a private or unknown CA, or a wrong intermediate)',
        fix: 'use a certificate from a public CA (fedtls obtains one from Let\'s Encrypt when acme.enabled is true), served with its intermediate',
      };
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return { summary: 'the certificate is self-signed', fix: 'use a certificate from a public CA (fedtls obtains one from Let\'s Encrypt when acme.enabled is true)' };
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return { summary: 'the chain ends in a root that is not trusted (self-signed CA)', fix: 'use a certificate from a public CA (fedtls obtains one from Let\'s Encrypt when acme.enabled is true)' };
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return { summary: `the certificate is not valid for ${name} (${error.message.replace(/^Hostname\/IP does not match certificate's altnames: /, '')})`, fix: `get a certificate that includes ${name} (with fedtls: add it to acme.domains)` };
    case 'CERT_REVOKED':
      return { summary: 'the certificate has been revoked', fix: RENEW };
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
      return { summary: 'the port does not speak TLS (plain HTTP?)', fix: 'point this port at a TLS listener (fedtls\'s listen.federation), not at the homeserver\'s plain HTTP port' };
    default:
      if (/^ERR_SSL_|^EPROTO$/.test(code) || /ssl|tls|certificate|handshake/i.test(error.message)) {
        if (/wrong version number|packet length too long|http request/i.test(error.message)) {
          return { summary: 'the port does not speak TLS (plain HTTP?)', fix: 'point this port at a TLS listener (fedtls\'s listen.federation), not at the homeserver\'s plain HTTP port' };
        }
        return { summary: `the TLS handshake failed (${code || 'error'}: ${error.message})`, fix: 'check that a TLS server with a certificate for this name listens on the port' };
      }
      return null;
  }
}
