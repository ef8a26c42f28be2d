// One ACME order, start to finish: create the order, answer every HTTP-01 challenge through
// the challenge table, finalize with a fresh key, download the chain. Promises: every token it
// put in the table is gone when it returns or throws (also when only some names fail), and
// nothing is sent to the CA after the outcome is known.

import acme from 'acme-client';
import type { AcmeConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import type { ChallengeTable } from './challenges.js';
import { recordedProblems } from './ca-problems.js';

export interface IssuedCertificate {
  keyPem: string;
  chainPem: string;
}

export class AcmeOrderError extends Error {
  constructor(
    message: string,
    /** Names whose validation failed, when known. */
    readonly failedNames: string[] = [],
    readonly underlying?: unknown,
  ) {
    super(message);
    this.name = 'AcmeOrderError';
  }
}

async function createKey(keyType: AcmeConfig['keyType']): Promise<Buffer> {
  if (keyType === 'ecdsa-p256') return acme.crypto.createPrivateEcdsaKey('P-256');
  return acme.crypto.createPrivateRsaKey(keyType === 'rsa-4096' ? 4096 : 2048);
}

export interface OrderOptions {
  client: acme.Client;
  domains: string[];
  challenges: ChallengeTable;
  keyType: AcmeConfig['keyType'];
  log: Logger;
  /** Extra fields for newOrder (e.g. `profile`, `replaces`). */
  orderExtras?: Record<string, unknown>;
}

export async function orderCertificate(options: OrderOptions): Promise<IssuedCertificate> {
  const { client, domains, challenges, log } = options;
  const order = await client.createOrder({
    identifiers: domains.map((value) => ({ type: 'dns', value })),
    ...(options.orderExtras ?? {}),
  } as Parameters<acme.Client['createOrder']>[0]);
  const authorizations = await client.getAuthorizations(order);
  const tokens: string[] = [];
  try {
    const results = await Promise.allSettled(authorizations.map(async (authz) => {
      const name = authz.identifier.value;
      if (authz.status === 'valid') return;
      const challenge = authz.challenges.find((c) => c.type === 'http-01');
      if (!challenge) {
        throw new AcmeOrderError(`the CA offers no HTTP-01 challenge for ${name}`, [name]);
      }
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
      challenges.add(challenge.token, keyAuthorization, name);
      tokens.push(challenge.token);
      log.info({ event: 'acme_challenge_ready', name, path: `/.well-known/acme-challenge/${challenge.token}` },
        `waiting for the CA to fetch http://${name}/.well-known/acme-challenge/${challenge.token} on port 80`);
      await client.completeChallenge(challenge);
      try {
        await client.waitForValidStatus(challenge);
      } catch (error) {
        // The challenge object does not name its identifier: tell the recorded problem which name it was.
        for (const problem of recordedProblems()) if (problem.url === challenge.url && problem.identifier === null) problem.identifier = name;
        throw new AcmeOrderError(`validation of ${name} failed: ${(error as Error).message}`, [name], error);
      }
    }));
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    if (failures.length > 0) {
      const failedNames = failures.flatMap((f) => (f instanceof AcmeOrderError ? f.failedNames : []));
      throw new AcmeOrderError(failures.map((f) => f.message).join('; '), failedNames, failures[0]);
    }
  } finally {
    for (const token of tokens) challenges.remove(token);
  }

  const key = await createKey(options.keyType);
  const [, csr] = await acme.crypto.createCsr({ commonName: domains[0]!, altNames: domains }, key);
  const finalized = await client.finalizeOrder(order, csr);
  const chainPem = await client.getCertificate(finalized);
  return { keyPem: key.toString(), chainPem };
}
