// What the CA actually said. acme-client turns CA answers into plain Error messages (and a
// network failure into an unrelated TypeError), losing the problem type, the HTTP status and
// Retry-After. This module records them per ACME operation (AsyncLocalStorage, so concurrent
// operations do not mix): every error answer, every `invalid` challenge/authorization with its
// error, and every network failure. Explanations and retry timing are built from these.

import { AsyncLocalStorage } from 'node:async_hooks';
import acme from 'acme-client';

export interface CaProblem {
  /** The URL asked (directory, newOrder, a challenge...). */
  url: string;
  /** HTTP status, or 0 when no answer came (network failure). */
  status: number;
  /** ACME problem type without the `urn:ietf:params:acme:error:` prefix, or a network code (ECONNREFUSED...). */
  type: string | null;
  detail: string;
  /** From the Retry-After header, in ms; null when absent. */
  retryAfterMs: number | null;
  /** The identifier this problem is about, when the CA says (authorizations, subproblems). */
  identifier: string | null;
}

const ACME_ERROR_PREFIX = 'urn:ietf:params:acme:error:';
const storage = new AsyncLocalStorage<CaProblem[]>();

/** Parses Retry-After (seconds or an HTTP date) into ms from now; null when absent or unusable. */
export function parseRetryAfter(value: unknown, now = Date.now()): number | null {
  if (typeof value !== 'string' || value.trim() === '') return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

function shortType(type: unknown): string | null {
  return typeof type === 'string' ? type.replace(ACME_ERROR_PREFIX, '') : null;
}

interface ProblemDocument {
  type?: string;
  detail?: string;
  identifier?: { value?: string };
  subproblems?: ProblemDocument[];
}

function record(problem: CaProblem): void {
  storage.getStore()?.push(problem);
}

function recordDocument(url: string, status: number, doc: ProblemDocument, retryAfterMs: number | null, identifier: string | null): void {
  record({ url, status, type: shortType(doc.type), detail: String(doc.detail ?? '').replace(/\s+/g, ' '), retryAfterMs, identifier: doc.identifier?.value ?? identifier });
  for (const sub of doc.subproblems ?? []) {
    record({ url, status, type: shortType(sub.type), detail: String(sub.detail ?? '').replace(/\s+/g, ' '), retryAfterMs, identifier: sub.identifier?.value ?? identifier });
  }
}

interface AxiosLikeResponse {
  status: number;
  headers: Record<string, unknown>;
  data: unknown;
  config: { url?: string };
}

let installed = false;

/** Hooks the recorder into acme-client's HTTP client (once). */
export function installProblemRecorder(): void {
  if (installed) return;
  installed = true;
  const onAnswer = (response: AxiosLikeResponse): AxiosLikeResponse => {
    if (!storage.getStore()) return response;
    const url = response.config.url ?? '';
    const data = response.data as (ProblemDocument & { status?: string; error?: ProblemDocument; challenges?: { error?: ProblemDocument }[] }) | null;
    const retryAfterMs = parseRetryAfter(response.headers['retry-after']);
    if (response.status >= 400) {
      recordDocument(url, response.status, typeof data === 'object' && data ? data : { detail: String(data ?? '') }, retryAfterMs, null);
    } else if (data && typeof data === 'object' && data.status === 'invalid') {
      // An invalid challenge carries `error`; an invalid authorization carries it in its challenges.
      const identifier = data.identifier?.value ?? null;
      const docs = [data.error, ...(data.challenges ?? []).map((c) => c.error)].filter((d): d is ProblemDocument => Boolean(d));
      if (docs.length === 0) docs.push({ type: 'invalid', detail: 'the CA marked it invalid without saying why' });
      for (const doc of docs) recordDocument(url, response.status, doc, retryAfterMs, identifier);
    }
    return response;
  };
  // acme-client makes every answer a rejection (it validates statuses itself), so answers
  // arrive here as errors carrying `response`.
  const onFailure = (error: { code?: string; message?: string; config?: { url?: string }; response?: AxiosLikeResponse }): Promise<never> => {
    if (error.response) {
      onAnswer(error.response);
    } else {
      record({ url: error.config?.url ?? '', status: 0, type: error.code ?? 'network', detail: error.message ?? String(error), retryAfterMs: null, identifier: null });
    }
    return Promise.reject(error);
  };
  // Run before acme-client's own interceptor, which replaces network errors with a TypeError.
  const manager = acme.axios.interceptors.response as unknown as { handlers?: unknown[]; use: (f: typeof onAnswer, r: typeof onFailure) => number };
  manager.use(onAnswer, onFailure);
  if (Array.isArray(manager.handlers) && manager.handlers.length > 1) {
    manager.handlers.unshift(manager.handlers.pop());
  }
}

/** Runs `operation` with a fresh problem list; the list is filled while it runs. */
export function withProblemRecording<T>(problems: CaProblem[], operation: () => Promise<T>): Promise<T> {
  installProblemRecorder();
  return storage.run(problems, operation);
}

/** The problems recorded so far in the current operation (empty outside one). */
export function recordedProblems(): CaProblem[] {
  return storage.getStore() ?? [];
}
