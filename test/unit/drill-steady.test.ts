/** The drill's steady-state check (src/drill/steady.ts): whole clusters pass, each flaw is named. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClusterStatus, NodeView } from '../../src/activities/cluster';
import { steadyState } from '../../src/drill/steady';

const NOW = Date.parse('2026-11-30T12:00:00Z');

function view(id: string, extra: Partial<NodeView> = {}): NodeView {
  return { id, url: `http://${id}`, reachable: true, status: 'ok', role: 'replica', epoch: 3, lsn: 10, ...extra };
}
function whole(): ClusterStatus {
  return {
    cluster: 'kimiclaw',
    configCenter: 'etcd',
    primary: { node: 'a1', url: 'http://a1', epoch: 3, since: '2026-11-30T11:00:00Z' },
    sync: { epoch: 3, standbys: ['b1'], placement: 'other-zone', degraded: false, since: '2026-11-30T11:00:01Z' },
    nodes: [
      view('a1', {
        role: 'primary',
        replicas: [
          { id: 'a2', mode: 'async', state: 'in-sync', appliedLsn: 10, lagLsn: 0, lastAckMsAgo: 5 },
          { id: 'b1', mode: 'sync', state: 'in-sync', appliedLsn: 10, lagLsn: 0, lastAckMsAgo: 5 },
        ],
      }),
      view('a2'),
      view('b1'),
    ],
  };
}
function problems(change: (s: ClusterStatus) => void, expect: { primary?: string } = {}): string[] {
  const s = whole();
  change(s);
  const r = steadyState(s, NOW, expect);
  assert.equal(r.steady, false, 'a flawed cluster passed');
  return r.steady ? [] : r.problems;
}

void describe('steadyState', () => {
  void test('a whole cluster is steady, with its primary, epoch and standby', () => {
    assert.deepEqual(steadyState(whole(), NOW, { primary: 'a1' }), {
      steady: true,
      primary: 'a1',
      epoch: 3,
      standbys: ['b1'],
    });
  });

  void test('each flaw is named', () => {
    assert.deepEqual(
      problems((s) => delete s.primary),
      ['no primary is recorded for kimiclaw'],
    );
    assert.deepEqual(
      problems(() => undefined, { primary: 'b1' }),
      ['the primary is a1, not b1 as expected'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[0] = view('a1', { reachable: false, error: 'ECONNREFUSED' }))),
      ['the primary a1 does not answer (ECONNREFUSED)'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[0]!.epoch = 2)),
      ['a1 answers as primary of epoch 2, not primary of the recorded epoch 3'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[0]!.status = 'damaged')),
      ['the primary a1 is damaged'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[2] = view('b1', { reachable: false }))),
      ['b1 does not answer'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[1]!.role = 'fenced')),
      ['a2 is fenced, not a replica'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[1]!.status = 'empty')),
      ['a2 is empty'],
    );
    assert.deepEqual(
      problems((s) => (s.nodes[0]!.replicas![0]!.state = 'catching-up')),
      ['a2 is not in sync with the primary (catching-up)'],
    );
    assert.deepEqual(
      problems((s) => s.nodes[0]!.replicas!.pop()),
      ['b1 is not in sync with the primary (not one of its replicas)'],
    );
    assert.deepEqual(
      problems((s) => (s.sync!.epoch = 2)),
      ['no sync record of epoch 3 (the monitor writes it once a standby is in sync)'],
    );
    assert.deepEqual(
      problems((s) => (s.sync = { ...s.sync!, degraded: true, standbys: [] })),
      ['the primary acknowledges without a synchronous standby since 2026-11-30T11:00:01Z'],
    );
    assert.deepEqual(
      problems(
        (s) => (s.sync = { ...s.sync!, standbys: [], switching: { from: ['a2'], to: ['b1'], why: 'zone back' } }),
      ),
      ['the synchronous role is moving from a2 to b1', 'no standby is proven to hold every acknowledged write'],
    );
    assert.deepEqual(
      problems((s) => (s.sync = { ...s.sync!, standbys: ['a2'], placement: 'same-zone' })),
      ["the standby a2 is in the primary's zone (the fallback)"],
    );
  });

  void test('a live topology lease (a failover, a restore, another drill) is a problem; a released or expired one is not', () => {
    const lease = {
      holder: 'failover-kimiclaw/run1',
      purpose: 'failover' as const,
      acquiredAt: '2026-11-30T11:59:50Z',
      renewedAt: '2026-11-30T11:59:58Z',
      expiresAt: '2026-11-30T12:00:30Z',
      preemptible: false,
    };
    const [p] = problems((s) => (s.lease = lease));
    assert.match(p!, /^a topology change runs: failover held by failover-kimiclaw\/run1 since/);
    const released = whole();
    released.lease = { ...lease, releasedAt: '2026-11-30T11:59:59Z' };
    assert.equal(steadyState(released, NOW).steady, true);
    const expired = whole();
    expired.lease = { ...lease, expiresAt: '2026-11-30T11:59:59Z' };
    assert.equal(steadyState(expired, NOW).steady, true);
  });

  void test("the drill's own lease is not a problem for its own checks; another drill's is", () => {
    const held = whole();
    held.lease = {
      holder: 'drill-kimiclaw/run1',
      purpose: 'drill',
      acquiredAt: '2026-11-30T11:59:50Z',
      renewedAt: '2026-11-30T11:59:58Z',
      expiresAt: '2026-11-30T12:00:30Z',
      preemptible: true,
    };
    assert.equal(steadyState(held, NOW, { leaseHolder: 'drill-kimiclaw/run1' }).steady, true);
    const other = steadyState(held, NOW, { leaseHolder: 'drill-kimiclaw/run2' });
    assert.equal(other.steady, false);
    assert.match(
      !other.steady ? other.problems[0]! : '',
      /^a topology change runs: drill held by drill-kimiclaw\/run1 /,
    );
  });
});
