/**
 * The evidence of a fault (docs/architecture.md, rule 12): a ledger of every write a node
 * acknowledged, checked against what every node holds afterwards. A workflow that reports success
 * is not evidence. Pure: tests, benchmarks and drills measure with the same functions.
 */

/** One acknowledgement: when, who gave it, at which epoch, and what it promised. */
export interface LedgerAck {
  /** Epoch ms when the answer arrived. */
  at: number;
  node: string;
  epoch: number;
  /** The batch's LSN and first event id (ids are consecutive in a batch). */
  lsn: number;
  firstId: number;
  /** The sequence numbers the batch carried, one per event. */
  seqs: number[];
}

/** An event carrying a `seq` as a node holds it. */
export interface HeldEvent {
  id: number;
  lsn: number;
  seq: number;
}

export interface LedgerCheck {
  /** Acknowledged sequence numbers the node does not hold. */
  lost: number[];
  /** Sequence numbers the node holds more than once. */
  duplicated: number[];
  /** Acknowledged events the node holds under another (id, LSN) than the one acknowledged. */
  changed: Array<{ seq: number; acknowledged: string; found: string }>;
}

/** What was acknowledged, per seq: the (id, LSN) the primary answered with. */
export function acknowledged(ledger: { acks: readonly LedgerAck[] }): Map<number, { id: number; lsn: number }> {
  const out = new Map<number, { id: number; lsn: number }>();
  for (const ack of ledger.acks) ack.seqs.forEach((seq, i) => out.set(seq, { id: ack.firstId + i, lsn: ack.lsn }));
  return out;
}

export function checkEvents(
  ledger: { acks: readonly LedgerAck[] },
  events: readonly HeldEvent[],
  options: { ignore?: (seq: number) => boolean } = {},
): LedgerCheck {
  const held = new Map<number, HeldEvent[]>();
  for (const e of events) held.set(e.seq, [...(held.get(e.seq) ?? []), e]);
  const result: LedgerCheck = { lost: [], duplicated: [], changed: [] };
  for (const [seq, place] of acknowledged(ledger)) {
    if (options.ignore?.(seq)) continue;
    const found = held.get(seq);
    if (!found) result.lost.push(seq);
    else if (found[0]!.id !== place.id || found[0]!.lsn !== place.lsn) {
      result.changed.push({ seq, acknowledged: `${place.id}@${place.lsn}`, found: `${found[0]!.id}@${found[0]!.lsn}` });
    }
  }
  for (const [seq, found] of held) if (found.length > 1) result.duplicated.push(seq);
  return result;
}

/** What a fault cost, measured from the ledger and what every node holds afterwards. */
export interface Recovery {
  /** The fault → the first write acknowledged after it (ms); undefined: none was. */
  rtoMs: number | undefined;
  /** Who acknowledged that write, at which epoch. */
  firstAck: { node: string; epoch: number; at: number } | undefined;
  /** Acknowledged events missing on any node afterwards: count, and the age span of them (ms). */
  rpo: { events: number; spanMs: number };
  /** Per node: acknowledged events missing, held twice, held at another (id, LSN). */
  nodes: Record<string, { lost: number; duplicated: number; changed: number }>;
  /** Acknowledged events in the ledger. */
  acknowledged: number;
  /** The acknowledged batches missing somewhere: how many, the first and the last (by LSN). */
  lostBatches?: { count: number; first: AckPlace; last: AckPlace };
}

/** Where and when a batch was acknowledged. */
export interface AckPlace {
  lsn: number;
  epoch: number;
  node: string;
  at: number;
}

/**
 * RTO: the fault → the first acknowledgement after it. RPO: acknowledged events missing on any
 * node afterwards, with the age span between the oldest and newest acknowledgement of them; only
 * `excluded` (the bad batches a repair is meant to remove) are left out.
 */
export function measureRecovery(
  acks: readonly LedgerAck[],
  faultAt: number,
  heldByNode: Readonly<Record<string, readonly HeldEvent[]>>,
  excluded: (seq: number) => boolean = () => false,
  /** Count only acknowledgements at a newer epoch than this one (by the node that took over). */
  afterEpoch = 0,
): Recovery {
  const first = acks.filter((a) => a.at >= faultAt && a.epoch > afterEpoch).sort((a, b) => a.at - b.at)[0];
  const ackedAt = new Map<number, number>();
  for (const a of acks) for (const s of a.seqs) ackedAt.set(s, a.at);
  const missing = new Set<number>();
  const nodes: Recovery['nodes'] = {};
  for (const [node, events] of Object.entries(heldByNode)) {
    const check = checkEvents({ acks }, events, { ignore: excluded });
    check.lost.forEach((s) => missing.add(s));
    nodes[node] = {
      lost: check.lost.length,
      duplicated: check.duplicated.filter((s) => ackedAt.has(s) && !excluded(s)).length,
      changed: check.changed.length,
    };
  }
  const times = [...missing].map((s) => ackedAt.get(s)!);
  const lostAcks = acks.filter((a) => a.seqs.some((q) => missing.has(q))).sort((a, b) => a.lsn - b.lsn);
  const where = (a: LedgerAck) => ({ lsn: a.lsn, epoch: a.epoch, node: a.node, at: a.at });
  return {
    ...(lostAcks.length
      ? { lostBatches: { count: lostAcks.length, first: where(lostAcks[0]!), last: where(lostAcks.at(-1)!) } }
      : {}),
    rtoMs: first ? first.at - faultAt : undefined,
    firstAck: first ? { node: first.node, epoch: first.epoch, at: first.at } : undefined,
    rpo: { events: missing.size, spanMs: times.length ? Math.max(...times) - Math.min(...times) : 0 },
    nodes,
    acknowledged: ackedAt.size,
  };
}
