/**
 * Checks of a replicated cluster in a harness (test/harness.ts, cluster: true) that fault tests
 * share: the primary and sync records in the config center, what each node's /health says, a
 * steady cluster (one primary, the other node an in-sync replica named in the sync record), and
 * the same data on both nodes at the primary's acknowledged head.
 */
import assert from 'node:assert/strict';
import { primaryKey, syncKey } from '../src/activities/cluster';
import { type ConfigCenter, type PrimaryRecord, readPrimary } from '../src/config-center';
import { NodeClient } from '../src/node-client';
import { type Harness, NODE_CREDENTIAL, nodeHealth, waitFor } from './harness';

/** The fields of GET /health these checks read. */
export interface ClusterNodeHealth {
  status: string;
  writable?: boolean;
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  damage?: { reason: string; detectedBy: string; at: string };
  disk?: { freeBytes: number; totalBytes: number; low: boolean };
  replicas: Array<{ id: string; state: string; appliedLsn: number | null }>;
}

export interface SyncRecordView {
  epoch: number;
  standbys: string[];
  degraded: boolean;
}

export interface SteadyCluster {
  primary: string;
  replica: string;
  epoch: number;
}

export function clusterChecks(h: Harness, center: ConfigCenter, cluster = 'kimiclaw') {
  const node = (id: string) => {
    const found = h.nodes.find((n) => n.id === id);
    if (!found) throw new Error(`no node ${id} in the harness`);
    return found;
  };
  const health = async (id: string) => (await nodeHealth(node(id).url)) as unknown as ClusterNodeHealth;
  const primaryRecord = async (): Promise<PrimaryRecord> => {
    const { record } = await readPrimary(center, primaryKey(cluster));
    if (!record) throw new Error('no primary recorded');
    return record;
  };
  const syncRecord = async () => (await center.get(syncKey(cluster))).value as SyncRecordView | undefined;
  const client = (id: string) => new NodeClient(id, node(id).url, NODE_CREDENTIAL, 60_000);

  /**
   * The same fingerprint at the same LSN on the primary `a` and the replica `b` (rows, ids, LSN and
   * content checksum), at the primary's acknowledged head: writes may go on meanwhile.
   */
  async function assertSameData(a: string, b: string): Promise<void> {
    const lsn = (await health(a)).ackedLsn;
    await waitFor(`${b} to reach ${a}'s acknowledged LSN ${lsn}`, async () => {
      const y = await health(b);
      return y.lsn >= lsn && y.ackedLsn >= lsn;
    });
    const [x, y] = await Promise.all([client(a).stats(lsn), client(b).stats(lsn)]);
    const pick = (s: typeof x) => [s.rows, s.minId, s.maxId, s.maxLsn, s.checksum, s.fingerprintVersion];
    assert.deepEqual(pick(y), pick(x), `${b} holds other data than ${a} at LSN ${lsn}`);
  }

  /**
   * Both nodes up, one primary at the recorded epoch, the other in sync and named by the sync
   * record, and the same data at the same LSN.
   */
  async function steady(timeoutMs = 120_000): Promise<SteadyCluster> {
    const record = await waitFor(
      'a steady cluster',
      async () => {
        const r = await primaryRecord();
        const p = await health(r.node);
        const other = h.nodes.find((n) => n.id !== r.node)!;
        const o = await health(other.id);
        const sync = await syncRecord();
        const ok =
          p.status === 'ok' &&
          p.role === 'primary' &&
          o.status === 'ok' &&
          o.role === 'replica' &&
          p.replicas.some((x) => x.id === other.id && x.state === 'in-sync') &&
          sync?.standbys.includes(other.id) === true;
        if (!ok) {
          const link = p.replicas.find((x) => x.id === other.id)?.state ?? 'no link';
          throw new Error(
            `record ${r.node}@${r.epoch}; ${r.node} ${p.status}/${p.role}@${p.epoch}; ${other.id} ${o.status}/${o.role}@${o.epoch} (${link}); ` +
              `sync record ${JSON.stringify(sync)}`,
          );
        }
        return r;
      },
      timeoutMs,
    );
    const replica = h.nodes.find((n) => n.id !== record.node)!.id;
    await assertSameData(record.node, replica);
    return { primary: record.node, replica, epoch: record.epoch };
  }

  return { node, health, primaryRecord, syncRecord, client, steady, assertSameData };
}
