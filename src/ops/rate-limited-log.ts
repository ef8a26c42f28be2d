// Log lines that something outside fedtls can repeat at will: a homeserver that is down fails
// every request, and any client can send request after request over the body limit. Owns: at
// most `burst` lines of one event per `intervalMs`, each with its own fields; what comes on
// top within the window is counted, and one line at the end of the window (from a timer, so
// the count is not lost when the flood stops) repeats the last one's fields with
// `suppressed: N`. Every line of the event carries `suppressed` (0 when nothing was left out),
// so all its lines have the same fields. Costs nothing until the event happens.

import type { Logger } from './log.js';

export interface RateLimit {
  intervalMs: number;
  /** Lines logged one by one per window; the rest are counted. */
  burst: number;
}

type Fields = Record<string, unknown>;

export class RateLimitedLog {
  private windowEnd = -Infinity;
  private loggedInWindow = 0;
  private suppressed = 0;
  private last: { fields: Fields; message: string } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly level: 'info' | 'warn',
    private readonly limit: RateLimit,
  ) {}

  /** One occurrence of the event: logged now, or counted for the line at the end of the window. */
  hit(fields: Fields, message: string): void {
    const now = performance.now();
    if (now >= this.windowEnd) {
      this.windowEnd = now + this.limit.intervalMs;
      this.loggedInWindow = 0;
    }
    if (this.loggedInWindow < this.limit.burst) {
      this.loggedInWindow += 1;
      this.log[this.level]({ ...fields, suppressed: 0 }, message);
      return;
    }
    this.suppressed += 1;
    this.last = { fields, message };
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.windowEnd - now);
      this.timer.unref();
    }
  }

  /** Logs the count of what was left out, if anything (at the end of each window, and at shutdown). */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.suppressed === 0 || this.last === null) return;
    const count = this.suppressed;
    const ms = this.limit.intervalMs;
    const within = ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
    this.log[this.level]({ ...this.last.fields, suppressed: count }, `${this.last.message} (and ${count} more like it within ${within}, not logged one by one)`);
    this.suppressed = 0;
    this.last = null;
    // This line opens the next window and counts in it: a flood that goes on gets at most
    // `burst` lines per interval, this one included.
    this.windowEnd = performance.now() + this.limit.intervalMs;
    this.loggedInWindow = 1;
  }
}
