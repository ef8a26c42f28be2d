// The rate limit for log lines that a flood can repeat at will (src/ops/rate-limited-log.ts),
// with a real pino logger and real timers on short intervals: the first `burst` lines of a
// window are logged one by one, the rest are counted and reported once when the window ends,
// a flood that goes on stays at `burst` lines per interval, and nothing is ever lost from the
// count.

import { describe, expect, it } from 'vitest';
import { RateLimitedLog } from '../src/ops/rate-limited-log.js';
import { captureLog } from './helpers/acme-harness.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('rate-limited log lines', () => {
  it('a burst of 300: `burst` lines at once, then one line with the count of the rest when the window ends', async () => {
    const { log, lines, waitFor } = captureLog();
    const limited = new RateLimitedLog(log, 'info', { intervalMs: 300, burst: 2 });
    for (let i = 0; i < 300; i += 1) limited.hit({ event: 'flood', n: i }, `hit ${i}`);
    expect(lines.map((l) => [l.n, l.suppressed])).toEqual([[0, 0], [1, 0]]);
    const summary = await waitFor((l) => l.event === 'flood' && l.suppressed !== 0, 2000, 'the count');
    expect(summary).toMatchObject({ level: 30, n: 299, suppressed: 298 });
    expect(String(summary.msg)).toMatch(/^hit 299 \(and 298 more like it within 300 ms, not logged one by one\)$/);
    // Every line of the event has the same fields.
    expect(new Set(lines.map((l) => Object.keys(l).sort().join(',')))).toHaveLength(1);
    await sleep(700);
    expect(lines).toHaveLength(3); // nothing more to say once the flood stopped
  });

  it('a flood that goes on gets at most `burst` lines per interval, the count included', async () => {
    const { log, lines } = captureLog();
    const limited = new RateLimitedLog(log, 'warn', { intervalMs: 200, burst: 1 });
    const started = performance.now();
    let sent = 0;
    while (performance.now() - started < 1000) {
      limited.hit({ event: 'down' }, 'down');
      sent += 1;
      await sleep(5);
    }
    limited.flush();
    expect(lines.every((l) => l.level === 40)).toBe(true);
    // 1000 ms at one line per 200 ms, plus the final flush.
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.length).toBeLessThanOrEqual(7);
    // Each occurrence is either its own line or counted in one.
    expect(lines.reduce((sum, l) => sum + (l.suppressed === 0 ? 1 : Number(l.suppressed)), 0)).toBe(sent);
  });

  it('after a quiet window, the next occurrence is logged at once again', async () => {
    const { log, lines } = captureLog();
    const limited = new RateLimitedLog(log, 'info', { intervalMs: 100, burst: 1 });
    limited.hit({ event: 'rare' }, 'first');
    await sleep(150);
    limited.hit({ event: 'rare' }, 'second');
    expect(lines.map((l) => [l.msg, l.suppressed])).toEqual([['first', 0], ['second', 0]]);
  });
});
