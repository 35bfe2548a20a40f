/**
 * A node's normal write load and what it costs, shared by bench:scrub and bench:restore: write
 * latency of 100-event batches every 100 ms, and a process's CPU seconds from /proc.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeToken } from '../src/node-token';
import { makeBatch } from '../src/node/payload';

const TICKS_PER_SECOND = 100;

/** User + system CPU seconds of a process (and of its waited-for children) from /proc. */
export async function cpuSeconds(pid: number | 'self'): Promise<{ own: number; children: number }> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /, '').split(' ');
  const at = (i: number) => Number(fields[i - 3]);
  return { own: (at(14) + at(15)) / TICKS_PER_SECOND, children: (at(16) + at(17)) / TICKS_PER_SECOND };
}

/** The p-th percentile of sorted values (0 when there are none). */
export function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface Latency {
  p50: number;
  p99: number;
  max: number;
  n: number;
  errors: number;
}

export function summarize(ms: number[], errors = 0): Latency {
  const sorted = [...ms].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? 0,
    n: sorted.length,
    errors,
  };
}

export const formatLatency = (l: Latency) =>
  `p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(0)} ms (${l.n} batches${l.errors ? `, ${l.errors} errors` : ''})`;

/**
 * Posts 100-event batches every 100 ms for windowMs while `load` runs; the batches' latencies.
 * `tag`, when given, is asked as each batch starts (e.g. "is a scrub pass running?"): `samples`
 * keeps the answer beside each latency.
 */
export async function latencies(
  url: string,
  token: NodeToken,
  windowMs: number,
  load?: () => Promise<void>,
  tag?: () => boolean,
): Promise<Latency & { samples: Array<{ ms: number; tagged: boolean }> }> {
  const samples: Array<{ ms: number; tagged: boolean }> = [];
  let errors = 0;
  const end = Date.now() + windowMs;
  let stop = false;
  const background = load
    ? (async () => {
        while (!stop) await load();
      })()
    : Promise.resolve();
  while (Date.now() < end) {
    const tagged = tag?.() ?? false;
    const started = performance.now();
    const res = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: token.authorization() },
      body: JSON.stringify({ events: makeBatch(100) }),
    });
    await res.arrayBuffer();
    const ms = performance.now() - started;
    if (res.ok) samples.push({ ms, tagged });
    else errors++;
    if (ms < 100) await sleep(100 - ms);
  }
  stop = true;
  await background;
  return {
    ...summarize(
      samples.map((s) => s.ms),
      errors,
    ),
    samples,
  };
}
