// The live certificate store: the one place listeners get a SecureContext from. Owns which
// pair serves which name, the default pair (no SNI / unknown name), swapping pairs as a
// whole, and the rules for replacing a served pair (replacement.ts). Promises: a pair is only
// swapped in after it loaded and validated completely, and never when it would make peers
// refuse what they accept now (a name lost, self-signed for CA-issued); a source that fails
// to load keeps serving its previous pair; one broken source never stops the others; what is
// reported about a source (warnings, refusal) is what its latest read of the files said.
// Emits 'change' after any swap so listeners can refresh their no-SNI default.

import { EventEmitter } from 'node:events';
import type { SecureContext } from 'node:tls';
import { CertificateLoadError, loadPairFromFiles, namesNotCovered, type LoadedPair } from './pem.js';
import { checkReplacement, type PeerName } from './replacement.js';

/** Where a pair comes from. The id is stable across reloads (e.g. `acme:example.org`). */
export interface CertificateSource {
  id: string;
  kind: 'acme' | 'file';
  certificatePath: string;
  privateKeyPath: string;
  /** Names this pair should serve; empty = the names in the certificate. */
  names: string[];
}

export type ReloadOutcome =
  | { status: 'added'; source: CertificateSource; pair: LoadedPair; uncoveredNames: string[] }
  /** `replacementWarnings`: what the swap itself changed for the worse (expires sooner, names dropped). */
  | { status: 'replaced'; source: CertificateSource; pair: LoadedPair; previous: LoadedPair; uncoveredNames: string[]; replacementWarnings: string[] }
  /** The same certificate is still served; `filesChanged`: the files were rewritten (reordered, re-encoded) around it. */
  | { status: 'unchanged'; source: CertificateSource; pair: LoadedPair; uncoveredNames: string[]; filesChanged: boolean }
  | { status: 'refused'; source: CertificateSource; error: CertificateLoadError; kept: LoadedPair | null }
  | { status: 'missing'; source: CertificateSource };

export interface StoreEntry {
  source: CertificateSource;
  pair: LoadedPair;
  /** Names configured for this source that its certificate does not cover. */
  uncoveredNames: string[];
}

/** The last time a source failed to load, kept until it loads again (for reports). */
export interface SourceRefusal {
  file: string;
  reason: string;
  at: Date;
}

/** Everything the store knows about one configured source: what it serves and what went wrong. */
export interface SourceState {
  source: CertificateSource;
  entry: StoreEntry | null;
  refusal: SourceRefusal | null;
}

/** The names a source is configured for that its certificate does not cover. */
export function uncoveredNames(source: CertificateSource, pair: LoadedPair): string[] {
  return namesNotCovered(source.names, pair.leaf);
}

interface NameIndex {
  exact: Map<string, StoreEntry>;
  wildcard: Map<string, StoreEntry>;
  defaultEntry: StoreEntry | null;
}

/** Which entry answers which name: configured names (else the certificate's), hand-managed files before ACME. */
function buildIndex(entries: Iterable<StoreEntry>, defaultName: string): NameIndex {
  const exact = new Map<string, StoreEntry>();
  const wildcard = new Map<string, StoreEntry>();
  // Hand-managed files win over ACME for the same name: that is what an admin who adds one means.
  const ordered = [...entries].sort((a, b) => (a.source.kind === b.source.kind ? 0 : a.source.kind === 'file' ? -1 : 1));
  for (const entry of ordered) {
    const names = entry.source.names.length > 0 ? entry.source.names : entry.pair.leaf.names;
    for (const name of names) {
      const index = name.startsWith('*.') ? wildcard : exact;
      const key = name.startsWith('*.') ? name.slice(2) : name;
      if (!index.has(key)) index.set(key, entry);
    }
  }
  const index: NameIndex = { exact, wildcard, defaultEntry: null };
  index.defaultEntry = lookupIn(index, defaultName) ?? ordered[0] ?? null;
  return index;
}

function lookupIn(index: NameIndex, servername: string): StoreEntry | null {
  const name = servername.toLowerCase().replace(/\.$/, '');
  const exact = index.exact.get(name);
  if (exact) return exact;
  const dot = name.indexOf('.');
  return dot > 0 ? index.wildcard.get(name.slice(dot + 1)) ?? null : null;
}

export interface StoreOptions {
  /**
   * Names peers are told to connect to (server_name, the host /.well-known/matrix/server
   * delegates to), with why, for the replacement rules: a reload never takes one away.
   */
  peerNames?: PeerName[];
}

export class CertificateStore extends EventEmitter {
  private entries = new Map<string, StoreEntry>();
  private sources = new Map<string, CertificateSource>();
  private refusals = new Map<string, SourceRefusal>();
  private index: NameIndex = { exact: new Map(), wildcard: new Map(), defaultEntry: null };
  private readonly peerNames: PeerName[];

  constructor(private defaultName: string, options: StoreOptions = {}) {
    super();
    this.peerNames = options.peerNames ?? [];
  }

  /**
   * Loads one source from disk; on success swaps it in, on failure keeps what it had. A pair
   * that replaces a served one must pass the replacement rules (replacement.ts); on first load
   * (nothing served from this source yet) only the pair itself is checked.
   */
  reloadSource(source: CertificateSource, now = new Date()): ReloadOutcome {
    const previous = this.entries.get(source.id) ?? null;
    this.sources.set(source.id, source);
    let pair: LoadedPair;
    try {
      pair = loadPairFromFiles(source.certificatePath, source.privateKeyPath, { now, origin: source.kind });
    } catch (error) {
      if (!(error instanceof CertificateLoadError)) throw error;
      if (!previous && /file not found/.test(error.reason) && source.kind === 'acme') {
        return { status: 'missing', source };
      }
      return this.refuse(source, error, previous, now);
    }
    const uncovered = uncoveredNames(source, pair);
    if (previous && previous.pair.leaf.fingerprint256 === pair.leaf.fingerprint256 && previous.pair.chainPem === pair.chainPem) {
      // The same certificate: keep serving the context peers already get, but report what this
      // read of the files says (warnings come and go with how the files are written).
      // After a refused read the files necessarily changed since, even if back to the served bytes.
      const filesChanged = this.refusals.delete(source.id) || previous.pair.filesDigest === null || previous.pair.filesDigest !== pair.filesDigest;
      const refreshed: LoadedPair = { ...pair, context: previous.pair.context };
      this.entries.set(source.id, { source, pair: refreshed, uncoveredNames: uncovered });
      this.rebuildIndex();
      return { status: 'unchanged', source, pair: refreshed, uncoveredNames: uncovered, filesChanged };
    }
    const entry: StoreEntry = { source, pair, uncoveredNames: uncovered };
    let replacementWarnings: string[] = [];
    if (previous) {
      const after = new Map(this.entries);
      after.set(source.id, entry);
      const afterIndex = buildIndex(after.values(), this.defaultName);
      const verdict = checkReplacement({
        source, previous: previous.pair, next: pair, peerNames: this.peerNames,
        configuredNames: [...this.sources.values()].flatMap((s) => s.names),
        servingBefore: (name) => lookupIn(this.index, name) ?? this.index.defaultEntry,
        servingAfter: (name) => lookupIn(afterIndex, name) ?? afterIndex.defaultEntry,
      });
      if (verdict.refusal) return this.refuse(source, verdict.refusal, previous, now);
      replacementWarnings = verdict.warnings;
    }
    this.refusals.delete(source.id);
    this.entries.set(source.id, entry);
    this.rebuildIndex();
    this.emit('change');
    return previous
      ? { status: 'replaced', source, pair, previous: previous.pair, uncoveredNames: uncovered, replacementWarnings }
      : { status: 'added', source, pair, uncoveredNames: uncovered };
  }

  private refuse(source: CertificateSource, error: CertificateLoadError, previous: StoreEntry | null, now: Date): ReloadOutcome {
    this.refusals.set(source.id, { file: error.file, reason: error.reason, at: now });
    return { status: 'refused', source, error, kept: previous?.pair ?? null };
  }

  /** Reloads every source; drops entries whose source is no longer configured. */
  reloadAll(sources: CertificateSource[], now = new Date()): ReloadOutcome[] {
    const wanted = new Set(sources.map((s) => s.id));
    let dropped = false;
    for (const id of [...this.sources.keys()]) {
      if (!wanted.has(id)) {
        this.sources.delete(id);
        this.refusals.delete(id);
        dropped = this.entries.delete(id) || dropped;
      }
    }
    if (dropped) {
      this.rebuildIndex();
      this.emit('change');
    }
    return sources.map((source) => this.reloadSource(source, now));
  }

  setDefaultName(name: string): void {
    this.defaultName = name;
    this.rebuildIndex();
    this.emit('change');
  }

  private rebuildIndex(): void {
    this.index = buildIndex(this.entries.values(), this.defaultName);
  }

  /** The context for an SNI name: its own pair, else the default, else null (no certificate yet). */
  contextFor(servername: string | undefined): SecureContext | null {
    const entry = (servername ? lookupIn(this.index, servername) : null) ?? this.index.defaultEntry;
    return entry?.pair.context ?? null;
  }

  /** The pair served when SNI is absent or unknown. */
  defaultPair(): LoadedPair | null {
    return this.index.defaultEntry?.pair ?? null;
  }

  /** The pair serving `servername`, without falling back to the default. */
  pairFor(servername: string): LoadedPair | null {
    return lookupIn(this.index, servername)?.pair ?? null;
  }

  /** Every source the store was asked to load, in the order first seen, with its state. */
  states(): SourceState[] {
    return [...this.sources.values()].map((source) => ({
      source,
      entry: this.entries.get(source.id) ?? null,
      refusal: this.refusals.get(source.id) ?? null,
    }));
  }

  list(): StoreEntry[] {
    return [...this.entries.values()];
  }

  get(sourceId: string): StoreEntry | null {
    return this.entries.get(sourceId) ?? null;
  }

  get size(): number {
    return this.entries.size;
  }
}
