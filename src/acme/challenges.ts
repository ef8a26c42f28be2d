// The live HTTP-01 challenge table: token → key authorization. The ACME order flow adds an
// entry before telling the CA to validate and removes it once the authorization is final;
// the port-80 listener only reads it.

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{1,256}$/;

export class ChallengeTable {
  private readonly entries = new Map<string, { keyAuthorization: string; name: string }>();

  /** RFC 8555 tokens are base64url; anything else can never be a valid lookup. */
  static isWellFormedToken(token: string): boolean {
    return TOKEN_PATTERN.test(token);
  }

  add(token: string, keyAuthorization: string, name: string): void {
    if (!ChallengeTable.isWellFormedToken(token)) throw new Error(`ACME server sent a malformed challenge token for ${name}`);
    this.entries.set(token, { keyAuthorization, name });
  }

  remove(token: string): void {
    this.entries.delete(token);
  }

  /** The key authorization for a token, or null. */
  lookup(token: string): string | null {
    return this.entries.get(token)?.keyAuthorization ?? null;
  }

  nameFor(token: string): string | null {
    return this.entries.get(token)?.name ?? null;
  }

  get size(): number {
    return this.entries.size;
  }
}
