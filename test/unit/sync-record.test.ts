/**
 * The sync record's keeper (decideSyncStep): it may name a standby only once the primary has
 * stopped acknowledging alone (seen in a probe) and the standby holds the head seen then.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type NodeView, type SyncRecord, decideSyncStep } from '../../src/activities/cluster';

const EPOCH = 3;

function primary(over: Partial<NodeView> = {}, replica: Partial<NonNullable<NodeView['replicas']>[number]> = {}) {
  return {
    id: 'node1',
    url: 'http://127.0.0.1:1',
    reachable: true,
    role: 'primary',
    epoch: EPOCH,
    lsn: 500,
    syncState: 'in-sync',
    allowDegraded: false,
    replicas: [
      { id: 'node2', mode: 'sync', state: 'in-sync', appliedLsn: 500, lagLsn: 0, lastAckMsAgo: 10, ...replica },
    ],
    ...over,
  } satisfies NodeView;
}

const degraded: SyncRecord = { epoch: EPOCH, standbys: [], degraded: true, since: '2026-11-30T10:00:00Z' };
const standby: SyncRecord = { epoch: EPOCH, standbys: ['node2'], degraded: false, since: '2026-11-30T10:00:00Z' };
const base = { epoch: EPOCH, state: {}, now: 10_000, policy: 'degrade' as const, degradeAfter: 2_000 };

void describe('decideSyncStep', () => {
  void test('leaving degraded mode: the primary stops acknowledging alone before the record changes', () => {
    const first = decideSyncStep({ ...base, primary: primary({ allowDegraded: true }), sync: degraded });
    assert.deepEqual(first.step, { kind: 'stop-acknowledging-alone' });
  });

  void test('then the record names the standby only once it holds the head seen after that', () => {
    // The probe that shows allowDegraded false: head 500, the standby has applied 480.
    const behind = decideSyncStep({ ...base, primary: primary({}, { appliedLsn: 480 }), sync: degraded });
    assert.deepEqual(behind.step, { kind: 'await-proof', required: 500 });
    // Next probe: the head moved on to 530 (acknowledged with the standby), the standby has 505.
    const caughtUp = decideSyncStep({
      ...base,
      primary: primary({ lsn: 530 }, { appliedLsn: 505 }),
      sync: degraded,
      state: behind.state,
    });
    assert.deepEqual(caughtUp.step, { kind: 'record', standbys: ['node2'] });
  });

  void test('a changed standby set needs the same proof; a stale proof for another set is not reused', () => {
    const two = primary({ lsn: 900 }, {});
    two.replicas.push({
      id: 'node3',
      mode: 'sync',
      state: 'in-sync',
      appliedLsn: 899,
      lagLsn: 1,
      lastAckMsAgo: 5,
    });
    two.replicas[0]!.appliedLsn = 899;
    const step = decideSyncStep({
      ...base,
      primary: two,
      sync: standby,
      state: { required: 100, forStandbys: 'node2' },
    });
    assert.deepEqual(step.step, { kind: 'await-proof', required: 900 });
  });

  void test('nothing to do when the record already names the in-sync standby of this epoch', () => {
    assert.deepEqual(decideSyncStep({ ...base, primary: primary(), sync: standby }).step, { kind: 'idle' });
    const older = { ...standby, epoch: EPOCH - 1 };
    assert.equal(decideSyncStep({ ...base, primary: primary(), sync: older }).step.kind, 'record');
  });

  void test('without an in-sync standby: degrade only after degradeAfter, and never under "block"', () => {
    const waiting = primary({ syncState: 'waiting' }, { state: 'down', appliedLsn: null });
    const first = decideSyncStep({ ...base, primary: waiting, sync: standby });
    assert.deepEqual(first.step, { kind: 'idle' });
    assert.equal(first.state.waitingSince, base.now);
    const later = decideSyncStep({
      ...base,
      now: base.now + 2_000,
      primary: waiting,
      sync: standby,
      state: first.state,
    });
    assert.deepEqual(later.step, { kind: 'degrade' });
    const blocked = decideSyncStep({
      ...base,
      policy: 'block',
      now: base.now + 60_000,
      primary: waiting,
      sync: standby,
      state: first.state,
    });
    assert.deepEqual(blocked.step, { kind: 'idle' });
  });
});
