/** decideClusterRestore: an in-place restore of a cluster keeps every acknowledged write. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ClusterFacts, decideClusterRestore } from '../../src/restore/cluster-plan';
import { RestoreInputSchema, type RestoreInput } from '../../src/restore/input';

const request = (input: RestoreInput = {}) => RestoreInputSchema.parse(input);

function facts(over: Partial<Record<'node1' | 'node2' | 'node3', object>> = {}, sync = ['node2']): ClusterFacts {
  const base = {
    node1: { id: 'node1', reachable: true, status: 'ok', role: 'primary', epoch: 3, lsn: 900, ackedLsn: 898 },
    node2: { id: 'node2', reachable: true, status: 'ok', role: 'replica', epoch: 3, lsn: 898, ackedLsn: 890 },
    node3: { id: 'node3', reachable: true, status: 'ok', role: 'replica', epoch: 3, lsn: 850, ackedLsn: 850 },
  };
  return {
    nodes: (['node1', 'node2', 'node3'] as const).map((id) => ({ ...base[id], ...over[id] })),
    primary: { node: 'node1', epoch: 3 },
    sync: { epoch: 3, standbys: sync, degraded: false },
  };
}

void describe('decideClusterRestore', () => {
  void test('the primary (damaged) fails over to the proven standby and is rebuilt from it', () => {
    const d = decideClusterRestore(request(), facts({ node1: { status: 'damaged' } }));
    assert.deepEqual(d.kind === 'rebuild' && [d.target, d.source, d.failoverFirst], ['node1', 'node2', true]);
  });

  void test('a replica is rebuilt from the healthy primary, with no failover', () => {
    const d = decideClusterRestore(request({ node: 'node3' }), facts({ node3: { status: 'damaged' } }));
    assert.deepEqual(d.kind === 'rebuild' && [d.target, d.source, d.failoverFirst], ['node3', 'node1', false]);
  });

  void test('with no node named, a damaged replica is the one restored, not the healthy primary', () => {
    const d = decideClusterRestore(request(), facts({ node3: { status: 'damaged' } }));
    assert.deepEqual(d.kind === 'rebuild' && [d.target, d.source, d.failoverFirst], ['node3', 'node1', false]);
    const e = decideClusterRestore(request(), facts({ node1: { status: 'empty' }, node3: { status: 'damaged' } }));
    assert.equal(e.kind === 'rebuild' && e.target, 'node1', 'the primary first when its own file is lost');
  });

  void test('only a standby the sync record proves is a source (not the most advanced replica)', () => {
    const d = decideClusterRestore(request(), facts({ node2: { reachable: false } }));
    assert.equal(d.kind, 'refuse');
    assert.equal(d.kind === 'refuse' && d.field, 'acceptLoss');
    assert.match(d.kind === 'refuse' ? d.message : '', /node2 cannot be asked what was acknowledged/);
    const degraded = facts();
    degraded.sync = { epoch: 3, standbys: [], degraded: true };
    const e = decideClusterRestore(request(), degraded);
    assert.equal(e.kind, 'restore', 'a degraded cluster proves no standby: backups, up to the acknowledged head');
    assert.equal(e.kind === 'restore' && e.requiredLsn, 898);
  });

  void test('with the loss accepted, backups and the archive up to what the reachable nodes prove', () => {
    const d = decideClusterRestore(request({ acceptLoss: true }), facts({ node2: { reachable: false } }));
    assert.equal(d.kind, 'restore');
    assert.equal(d.kind === 'restore' && d.requiredLsn, 898);
    assert.deepEqual(d.kind === 'restore' && d.others, ['node2', 'node3']);
  });

  void test('a node that started over (LSN 0, nothing acknowledged) proves nothing: the archive is restored in full', () => {
    const down = { reachable: false };
    const restarted = { status: 'ok', role: 'replica', epoch: 1, lsn: 0, ackedLsn: 0 };
    const d = decideClusterRestore(
      request({ node: 'node3', acceptLoss: true }),
      facts({ node1: down, node2: down, node3: restarted }),
    );
    assert.equal(d.kind, 'restore');
    assert.equal(d.kind === 'restore' && d.requiredLsn, undefined, 'not capped at LSN 0');
  });

  void test('every node reachable and empty: the archive is all there is, no proof asked', () => {
    const empty = { status: 'empty', lsn: 0, ackedLsn: 0 };
    const d = decideClusterRestore(request(), facts({ node1: empty, node2: empty, node3: empty }));
    assert.equal(d.kind, 'restore');
    assert.equal(d.kind === 'restore' && d.requiredLsn, undefined);
    assert.match(d.kind === 'restore' ? d.why : '', /every node lost its data/);
  });

  void test('going back in time is a restore of the named node that the others follow', () => {
    for (const input of [
      { toLsn: 500 },
      { pointInTime: '2026-01-01T00:00:00Z' },
      { backupId: 'latest' as const },
      { toLsn: 700, excludeLsns: [{ fromLsn: 600, toLsn: 610 }] },
    ]) {
      const d = decideClusterRestore(request(input), facts());
      assert.equal(d.kind, 'restore', JSON.stringify(input));
      assert.equal(d.kind === 'restore' && d.target, 'node1');
      assert.equal(d.kind === 'restore' && d.requiredLsn, undefined);
    }
  });

  void test('leaving bad batches out is no step back: everything acknowledged is required, also what is acknowledged while it stages', () => {
    for (const input of [
      { excludeLsns: [{ fromLsn: 600, toLsn: 610 }] },
      { backupId: 'latest' as const, excludeLsns: [{ fromLsn: 600, toLsn: 610 }] },
    ]) {
      const d = decideClusterRestore(request(input), facts());
      assert.equal(d.kind === 'restore' && d.target, 'node1', JSON.stringify(input));
      assert.equal(d.kind === 'restore' && d.requiredLsn, 898, 'the highest acknowledged LSN a node proves');
      assert.match(d.kind === 'restore' ? d.why : '', /keeping every write acknowledged around and after them/);
    }
  });

  void test('an unknown node is refused', () => {
    const d = decideClusterRestore(request({ node: 'node9' }), facts());
    assert.deepEqual(d.kind === 'refuse' && d.field, 'node');
  });
});
