// Self-signed certificates made on the spot with node-forge (node:crypto cannot create
// certificates): the TLS certificate of the local Pebble's own listener, and test fixtures.

import forge from 'node-forge';

export interface SelfSignedOptions {
  names: string[];
  ips?: string[];
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  isCA?: boolean;
  commonName?: string;
}

export interface GeneratedPair {
  certPem: string;
  keyPem: string;
}

export function createSelfSigned(options: SelfSignedOptions): GeneratedPair {
  const keys = forge.pki.rsa.generateKeyPair(2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = `01${forge.util.bytesToHex(forge.random.getBytesSync(15))}`;
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + (options.days ?? 365) * 86_400_000);
  const attrs = [{ name: 'commonName', value: options.commonName ?? options.names[0] ?? 'localhost' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: options.isCA ?? false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: options.isCA ?? false },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [...options.names.map((value) => ({ type: 2, value })), ...(options.ips ?? []).map((ip) => ({ type: 7, ip }))] },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}
