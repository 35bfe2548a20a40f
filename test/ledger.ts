/**
 * The evidence of a fault test (docs/architecture.md, rule 12): the writer's own record of every
 * write a node acknowledged, checked against what every node holds afterwards. A workflow that
 * reports success is not evidence.
 */
import assert from 'node:assert/strict';
import { type ClusterWriter, ledgerEventsOn } from '../src/dev/cluster-writer';
import { acknowledged, checkEvents } from '../src/drill/measure';
import type { NodeToken } from '../src/node-token';

export { type LedgerCheck, acknowledged, checkEvents } from '../src/drill/measure';

/** No (id, LSN) was acknowledged for two different events: each LSN answered one batch. */
export function assertOneEventPerPlace(writer: ClusterWriter, allowed: (lsn: number) => boolean = () => false): void {
  const byLsn = new Map<number, string>();
  for (const ack of writer.acks) {
    const batch = `${ack.firstId}:${ack.seqs.join(',')}`;
    const earlier = byLsn.get(ack.lsn);
    if (earlier !== undefined && earlier !== batch && !allowed(ack.lsn)) {
      assert.fail(`LSN ${ack.lsn} was acknowledged for two different batches: ${earlier} and ${batch}`);
    }
    byLsn.set(ack.lsn, batch);
  }
}

/** Checks every node: nothing acknowledged lost, duplicated or changed. */
export async function assertLedgerOnNodes(
  writer: ClusterWriter,
  nodes: ReadonlyArray<{ id: string; url: string }>,
  token: NodeToken,
  options: { ignore?: (seq: number) => boolean } = {},
): Promise<void> {
  const places = acknowledged(writer);
  const ackOf = (seq: number) => writer.acks.find((a) => a.seqs.includes(seq));
  for (const node of nodes) {
    const check = checkEvents(writer, await ledgerEventsOn(node.url, token), options);
    const lost = check.lost.slice(0, 10).map((seq) => {
      const ack = ackOf(seq);
      return `${seq} (${places.get(seq)?.id}@${places.get(seq)?.lsn} by ${ack?.node} epoch ${ack?.epoch} at ${ack ? new Date(ack.at).toISOString() : '?'})`;
    });
    assert.deepEqual(
      { lost: check.lost.length, duplicated: check.duplicated.length, changed: check.changed.length },
      { lost: 0, duplicated: 0, changed: 0 },
      `node ${node.id}: lost ${lost.join(', ')} duplicated ${check.duplicated.slice(0, 10).join(',')} changed ${JSON.stringify(check.changed.slice(0, 3))}`,
    );
  }
}
