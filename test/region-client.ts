/**
 * A client inside a partitioned region (test/partition.test.ts starts it in the region's network
 * namespace): it writes to the one node it was given, with the epoch it was given, as a client that
 * read the primary record before the partition and cannot read it again would, and prints every
 * answer as a JSON line on stdout (an acknowledgement with its LSN, first id and sequence numbers,
 * or a refusal or timeout). With --health-every-ms it also reads the node's GET /health that often
 * and prints its leadership lease and acknowledged LSN: the node's own word, from its side of the
 * partition. It stops after the requests in flight once its stdin ends.
 *
 *   ip netns exec <ns> node --import tsx test/region-client.ts --url URL --epoch N --first-seq S \
 *     [--health-every-ms 100]
 *
 * The events token comes from KIMICLAW_TEST_EVENTS_TOKEN in the environment, never from argv.
 */
import { parseArgs } from 'node:util';
import { NodeToken } from '../src/node-token';

export interface RegionClientLine {
  /** A write (POST /events) or a read of GET /health. */
  kind: 'write' | 'health';
  /** When the request went out and when its answer (or failure) came back (ms since the epoch). */
  sentAt: number;
  at: number;
  ack?: { lsn: number; firstId: number; seqs: number[] };
  /** HTTP status of a refusal; absent for a timeout or a connection error. */
  status?: number;
  error?: string;
  /** A GET /health answer: the node's lease and acknowledged LSN. */
  health?: {
    role: string;
    ackedLsn: number;
    lease?: { open: boolean; holds: boolean; failsafe: boolean; validUntil?: string; lastError?: string };
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      epoch: { type: 'string' },
      'first-seq': { type: 'string' },
      batch: { type: 'string', default: '5' },
      'timeout-ms': { type: 'string', default: '2000' },
      'pause-ms': { type: 'string', default: '5' },
      'health-every-ms': { type: 'string', default: '0' },
    },
  });
  const secret = process.env.KIMICLAW_TEST_EVENTS_TOKEN;
  if (!values.url || !values.epoch || !values['first-seq'] || !secret) {
    throw new Error('usage: region-client.ts --url URL --epoch N --first-seq S (KIMICLAW_TEST_EVENTS_TOKEN set)');
  }
  const token = new NodeToken(secret);
  const batch = Number(values.batch);
  const timeoutMs = Number(values['timeout-ms']);
  const pauseMs = Number(values['pause-ms']);
  let seq = Number(values['first-seq']) - 1;
  let stopped = false;
  process.stdin.on('end', () => (stopped = true)).resume();
  const print = (line: RegionClientLine): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
  const healthEveryMs = Number(values['health-every-ms']);
  const health = (async () => {
    while (healthEveryMs > 0 && !stopped) {
      const sentAt = Date.now();
      try {
        const res = await fetch(`${values.url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
        const body = (await res.json()) as {
          role: string;
          ackedLsn: number;
          leaderLease?: NonNullable<RegionClientLine['health']>['lease'];
        };
        const l = body.leaderLease;
        const lease = l && {
          open: l.open,
          holds: l.holds,
          failsafe: l.failsafe,
          ...(l.validUntil ? { validUntil: l.validUntil } : {}),
          ...(l.lastError ? { lastError: l.lastError } : {}),
        };
        print({
          kind: 'health',
          sentAt,
          at: Date.now(),
          health: { role: body.role, ackedLsn: body.ackedLsn, ...(lease ? { lease } : {}) },
        });
      } catch (err) {
        print({ kind: 'health', sentAt, at: Date.now(), error: `${(err as Error).name}: ${(err as Error).message}` });
      }
      await new Promise((r) => setTimeout(r, healthEveryMs));
    }
  })();
  while (!stopped) {
    const seqs = Array.from({ length: batch }, () => ++seq);
    const sentAt = Date.now();
    try {
      const res = await fetch(`${values.url}/events`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-kimiclaw-epoch': values.epoch,
          authorization: token.authorization(),
        },
        body: JSON.stringify({ events: seqs.map((s) => ({ kind: 'bench', payload: { seq: s } })) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = (await res.json()) as { lsn?: number; firstId?: number; error?: { code?: string } };
      if (res.ok && typeof body.lsn === 'number' && typeof body.firstId === 'number') {
        print({ kind: 'write', sentAt, at: Date.now(), ack: { lsn: body.lsn, firstId: body.firstId, seqs } });
      } else {
        print({
          kind: 'write',
          sentAt,
          at: Date.now(),
          status: res.status,
          error: body.error?.code ?? 'no error code',
        });
      }
    } catch (err) {
      print({ kind: 'write', sentAt, at: Date.now(), error: `${(err as Error).name}: ${(err as Error).message}` });
      await new Promise((r) => setTimeout(r, 50));
    }
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  }
  await health;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`region-client: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
