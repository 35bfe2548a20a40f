/**
 * A client of a replicated kimiclaw cluster, as tests and bench:failover use it: follows the
 * primary record in the config center, sends each batch with the epoch it read, and on any error
 * re-reads the record and retries. While a write is in flight it keeps reading the record, and
 * gives the write up as soon as a newer epoch is recorded (a frozen primary answers nothing: the
 * client moves to the new primary when it is published, not when its own timeout runs out). Every batch carries unique sequence numbers; `acked` lists the
 * ones a primary acknowledged, so a test can prove none of them is lost.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { type ConfigCenter, readPrimary } from '../config-center';
import type { HeldEvent, LedgerAck } from '../drill/measure';
import type { NodeToken } from '../node-token';

export interface ClusterWriter {
  /** Sequence numbers of acknowledged events. */
  acked: number[];
  /**
   * Each acknowledgement in order: when, who gave it, at which epoch, and what it promised: the
   * batch's LSN, its first event id (ids are consecutive in a batch) and the sequence numbers sent.
   */
  acks: LedgerAck[];
  errors: number;
  stop(): Promise<void>;
}

/** Sequence numbers are unique across every writer of this process, so ledgers never collide. */
let lastSeq = 0;

export function startClusterWriter(
  center: ConfigCenter,
  /** `token`: an events (or control) token the nodes accept; undefined only for nodes run open. */
  options: {
    token: NodeToken | undefined;
    key?: string;
    batch?: number;
    pauseMs?: number;
    /**
     * How long one write may wait for its answer (default 5 s): a client that bounds its wait
     * and re-reads the primary record moves on from a frozen primary (docs/node-api.md).
     */
    requestTimeoutMs?: number;
    /** How often the primary record is read while a write is in flight (default 100 ms). */
    followMs?: number;
    /** Called with each acknowledgement as it arrives (a drill's load process writes it to its ledger). */
    onAck?: (ack: LedgerAck) => void;
    /** Sequence numbers start after this (a load process that restarts continues its ledger). */
    firstSeq?: number;
  },
): ClusterWriter {
  const batch = options.batch ?? 5;
  lastSeq = Math.max(lastSeq, options.firstSeq ?? 0);
  let stopped = false;
  const writer: ClusterWriter = { acked: [], acks: [], errors: 0, stop: async () => undefined };
  let target: { node: string; url: string; epoch: number } | undefined;
  let inFlight: AbortController | undefined;
  const follow = (async () => {
    while (!stopped) {
      await sleep(options.followMs ?? 100);
      // The write in flight when the read began: by the time the record is read, it may have
      // been answered (and another one sent); only that one is given up.
      const watched = inFlight;
      if (!watched || !target) continue;
      const sentTo = target.epoch;
      const record = await readPrimary(center, options.key).then(
        (r) => r.record,
        () => undefined,
      );
      if (record && record.epoch > sentTo && inFlight === watched) {
        watched.abort(new Error(`epoch ${record.epoch} recorded`));
      }
    }
  })();
  const loop = (async () => {
    while (!stopped) {
      try {
        target ??= (await readPrimary(center, options.key)).record;
        if (!target) throw new Error('no primary recorded yet');
        const seqs = Array.from({ length: batch }, () => ++lastSeq);
        inFlight = new AbortController();
        const res = await fetch(`${target.url}/events`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-kimiclaw-epoch': String(target.epoch),
            ...authorization(options.token),
          },
          body: JSON.stringify({ events: seqs.map((s) => ({ kind: 'bench', payload: { seq: s } })) }),
          signal: AbortSignal.any([inFlight.signal, AbortSignal.timeout(options.requestTimeoutMs ?? 5_000)]),
        });
        const body = (await res.json()) as { lsn?: number; firstId?: number };
        inFlight = undefined;
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        writer.acked.push(...seqs);
        const ack = {
          at: Date.now(),
          node: target.node,
          epoch: target.epoch,
          lsn: body.lsn ?? 0,
          firstId: body.firstId ?? 0,
          seqs,
        };
        writer.acks.push(ack);
        options.onAck?.(ack);
        if (options.pauseMs) await sleep(options.pauseMs);
      } catch {
        inFlight = undefined;
        writer.errors++;
        target = undefined;
        await sleep(50);
      }
    }
  })();
  writer.stop = async () => {
    stopped = true;
    await Promise.all([loop, follow]);
  };
  return writer;
}

/** Every event a writer wrote that a node holds, as the node holds it (in LSN order). */
export type LedgerEvent = HeldEvent;

/** Every event carrying a `seq` that a node holds, read through GET /events (duplicates kept). */
export async function ledgerEventsOn(
  url: string,
  token: NodeToken | undefined,
  /** Read only beyond this LSN (e.g. past a seeded database that holds no ledger events). */
  afterLsn = 0,
): Promise<LedgerEvent[]> {
  const found: LedgerEvent[] = [];
  let after = afterLsn;
  for (;;) {
    const res = await fetch(`${url}/events?afterLsn=${after}&limit=50000`, { headers: authorization(token) });
    if (!res.ok) throw new Error(`${url}/events answered HTTP ${res.status}`);
    const page = (await res.json()) as {
      events: Array<{ id: number; lsn: number; payload: string }>;
      lastLsn: number;
      more: boolean;
    };
    for (const e of page.events) {
      const payload = JSON.parse(e.payload) as { seq?: number };
      if (typeof payload.seq === 'number') found.push({ id: e.id, lsn: e.lsn, seq: payload.seq });
    }
    if (!page.more) return found;
    after = page.lastLsn;
  }
}

/** Every `seq` present on a node, read through GET /events. */
export async function sequencesOn(url: string, token: NodeToken | undefined): Promise<Set<number>> {
  const seen = new Set<number>();
  let after = 0;
  for (;;) {
    const res = await fetch(`${url}/events?afterLsn=${after}&limit=50000`, { headers: authorization(token) });
    if (!res.ok) throw new Error(`${url}/events answered HTTP ${res.status}`);
    const page = (await res.json()) as { events: Array<{ payload: string }>; lastLsn: number; more: boolean };
    for (const e of page.events) {
      const payload = JSON.parse(e.payload) as { seq?: number };
      if (typeof payload.seq === 'number') seen.add(payload.seq);
    }
    if (!page.more) return seen;
    after = page.lastLsn;
  }
}

function authorization(token: NodeToken | undefined): Record<string, string> {
  return token ? { authorization: token.authorization() } : {};
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The `seq` of every event in the diverged tails a node kept aside in its data directory
 * (<db>.duckdb.aside.<time>.diverged-tail: the writes it held beyond a newer epoch's fork).
 */
export async function sequencesKeptAside(dataDir: string): Promise<Set<number>> {
  const seqs = new Set<number>();
  for (const name of await readdir(dataDir)) {
    if (!/\.aside\.[0-9TZ]+\.diverged-tail(-\d+)?$/.test(name)) continue;
    const db = await DuckDBInstance.create(join(dataDir, name), { access_mode: 'READ_ONLY' });
    const conn = await db.connect();
    try {
      for (const [payload] of (await conn.runAndReadAll('SELECT payload FROM events')).getRows()) {
        const seq = (JSON.parse(String(payload)) as { seq?: number }).seq;
        if (typeof seq === 'number') seqs.add(seq);
      }
    } finally {
      conn.closeSync();
      db.closeSync();
    }
  }
  return seqs;
}
