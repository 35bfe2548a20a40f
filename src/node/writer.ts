/**
 * A steady event writer against a node's POST /events, used by the demo and the benchmarks.
 * One batch at a time: the next batch starts intervalMs after the previous one started (or at
 * once when it took longer), so a write stall shows up as latency, not as piled-up requests.
 *
 *   npx tsx src/node/writer.ts --url http://127.0.0.1:7070 --rate 1000 [--batch 100]
 *     [--payload-bytes 400] [--duration-s 60] [--token-file FILE]
 * The token (events or control) comes from --token-file (its first token) or KIMICLAW_NODE_TOKEN,
 * never argv.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { describeZodIssues } from '../config';
import { NodeToken, readTokenFile } from '../node-token';
import { errorMessage } from './log';
import { makeBatch } from './payload';
import type { AppendResult } from './store';

export interface WriterOptions {
  url: string;
  /** An events (or control) token the node accepts; undefined only for a node run open. */
  token: NodeToken | undefined;
  eventsPerBatch: number;
  intervalMs: number;
  /** Pad each payload to at least this many bytes of JSON. */
  payloadBytes?: number;
  /** Called with every acknowledged batch, in order. */
  onAck?: (ack: AppendResult) => void;
}

export interface WriterStats {
  batches: number;
  events: number;
  errors: number;
  lastLsn: number | null;
  maxLatencyMs: number;
  lastError?: string;
}

export interface RunningWriter {
  /** Stops after the batch in flight (if any) completes; resolves with the final stats. */
  stop(): Promise<WriterStats>;
  stats(): WriterStats;
}

const AckSchema = z.object({
  lsn: z.number().int(),
  firstId: z.number().int(),
  lastId: z.number().int(),
  count: z.number().int(),
});

export function startWriter(options: WriterOptions): RunningWriter {
  const endpoint = new URL('/events', options.url).toString();
  const stats: WriterStats = { batches: 0, events: 0, errors: 0, lastLsn: null, maxLatencyMs: 0 };
  const abort = new AbortController();
  let stopping = false;

  const postBatch = async (): Promise<void> => {
    const body = JSON.stringify({ events: makeBatch(options.eventsPerBatch, options.payloadBytes) });
    const started = performance.now();
    try {
      const headers = {
        'content-type': 'application/json',
        ...(options.token ? { authorization: options.token.authorization() } : {}),
      };
      const res = await fetch(endpoint, { method: 'POST', headers, body });
      const json: unknown = await res.json();
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${JSON.stringify(json)}`);
      const ack = AckSchema.parse(json);
      stats.batches++;
      stats.events += ack.count;
      stats.lastLsn = ack.lsn;
      options.onAck?.(ack);
    } catch (err) {
      stats.errors++;
      stats.lastError = errorMessage(err);
    } finally {
      stats.maxLatencyMs = Math.max(stats.maxLatencyMs, Math.round(performance.now() - started));
    }
  };

  const loop = (async () => {
    while (!stopping) {
      const started = performance.now();
      await postBatch();
      const wait = options.intervalMs - (performance.now() - started);
      if (wait > 0 && !stopping) await sleep(wait, undefined, { signal: abort.signal }).catch(() => undefined);
    }
  })();

  return {
    stats: () => ({ ...stats }),
    async stop() {
      stopping = true;
      abort.abort();
      await loop;
      return { ...stats };
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      batch: { type: 'string', default: '100' },
      'payload-bytes': { type: 'string' },
      'duration-s': { type: 'string' },
      'token-file': { type: 'string' },
    },
  });
  const parsed = z
    .object({
      url: z.url({ error: 'must be the node URL, e.g. http://127.0.0.1:7070' }),
      rate: z.coerce.number().positive({ error: 'must be events per second (> 0)' }),
      batch: z.coerce.number().int().min(1).max(10_000, { error: 'must be 1-10000 events' }),
      'payload-bytes': z.coerce.number().int().min(0).optional(),
      'duration-s': z.coerce.number().positive().optional(),
      'token-file': z.string().min(1).optional(),
    })
    .safeParse(values);
  if (!parsed.success) throw new Error(describeZodIssues(parsed.error, (p) => `--${p}`).join('; '));
  const args = parsed.data;
  const tokenFile = args['token-file'];
  const tokenText = tokenFile ? readTokenFile(tokenFile)[0] : process.env.KIMICLAW_NODE_TOKEN || undefined;
  const writer = startWriter({
    url: args.url,
    token: tokenText === undefined ? undefined : new NodeToken(tokenText),
    eventsPerBatch: args.batch,
    intervalMs: (args.batch / args.rate) * 1000,
    payloadBytes: args['payload-bytes'],
  });
  const report = setInterval(
    () => process.stderr.write(`${JSON.stringify({ event: 'writer', ...writer.stats() })}\n`),
    5000,
  );
  const finish = async (): Promise<void> => {
    clearInterval(report);
    process.stdout.write(`${JSON.stringify({ event: 'writer_stopped', ...(await writer.stop()) })}\n`);
    process.exit(0);
  };
  process.once('SIGINT', () => void finish());
  process.once('SIGTERM', () => void finish());
  const durationS = args['duration-s'];
  if (durationS) setTimeout(() => void finish(), durationS * 1000);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`writer: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}
