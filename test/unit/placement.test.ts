/**
 * Zone-aware choice of the synchronous standby (src/failover/placement.ts): another zone than the
 * primary's whenever one is in sync, the primary's own zone as a recorded fallback before any
 * degraded mode, and never a move that takes the role from an in-sync standby to a node that is
 * still catching up.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decideStandbySwitch,
  joinSpecs,
  placementOf,
  regionElsewhere,
  sentryNodes,
  replicaSpecs,
  zonesOf,
} from '../../src/failover/placement';

const nodes = [
  { id: 'a1', url: 'http://a1', zone: 'a' },
  { id: 'a2', url: 'http://a2', zone: 'a' },
  { id: 'b1', url: 'http://b1', zone: 'b' },
];
const syncOf = (specs: Array<{ id: string; mode: string }>) => specs.filter((s) => s.mode === 'sync').map((s) => s.id);

void describe('replicaSpecs', () => {
  void test("a standby region's node is never synchronous, even when it is the only healthy replica", () => {
    const regional = [
      { id: 'a1', url: 'http://a1', region: 'a' },
      { id: 'a2', url: 'http://a2', region: 'a' },
      { id: 'b1', url: 'http://b1', region: 'b' },
    ];
    assert.deepEqual(syncOf(replicaSpecs(regional, 'a1', new Set(['a2', 'b1']), 1)), ['a2']);
    assert.deepEqual(syncOf(replicaSpecs(regional, 'a1', new Set(['b1']), 1)), ['a2'], 'a2 waits for its turn');
    assert.deepEqual(syncOf(replicaSpecs(regional, 'a1', new Set(['a2', 'b1']), 2)), ['a2']);
    // After a region failover, b1's replicas are all in the other region: none is synchronous.
    assert.deepEqual(syncOf(replicaSpecs(regional, 'b1', new Set(['a1', 'a2']), 1)), []);
    assert.equal(
      decideStandbySwitch({
        nodes: regional,
        primaryId: 'a1',
        replicas: [
          { id: 'a2', mode: 'sync', state: 'down' },
          { id: 'b1', mode: 'async', state: 'in-sync' },
        ],
        count: 1,
        placement: 'prefer-other-zone',
      }),
      undefined,
      'the synchronous role never moves to another region',
    );
  });

  void test('the synchronous standby is in another zone when one is healthy, though listed after a same-zone node', () => {
    const specs = replicaSpecs(nodes, 'a1', new Set(['a2', 'b1']), 1);
    assert.deepEqual(syncOf(specs), ['b1']);
    assert.deepEqual(
      specs.map((s) => s.id),
      ['a2', 'b1'],
      'listed in config order',
    );
  });

  void test('with the other zone down, the primary’s own zone is the fallback', () => {
    assert.deepEqual(syncOf(replicaSpecs(nodes, 'a1', new Set(['a2']), 1)), ['a2']);
  });

  void test('"require-other-zone" never makes a same-zone node synchronous', () => {
    assert.deepEqual(syncOf(replicaSpecs(nodes, 'a1', new Set(['a2']), 1, 'require-other-zone')), ['b1']);
  });

  void test('"any" keeps config order among healthy nodes', () => {
    assert.deepEqual(syncOf(replicaSpecs(nodes, 'a1', new Set(['a2', 'b1']), 1, 'any')), ['a2']);
  });

  void test('nodes without zones: the first healthy ones in config order, as before zones', () => {
    const plain = nodes.map(({ id, url }) => ({ id, url }));
    assert.deepEqual(syncOf(replicaSpecs(plain, 'a1', new Set(['b1']), 1)), ['b1']);
    assert.deepEqual(syncOf(replicaSpecs(plain, 'a1', new Set(['a2', 'b1']), 1)), ['a2']);
  });
});

void describe('joinSpecs', () => {
  void test('a returning node joins as asynchronous: the in-sync standby keeps its role', () => {
    const specs = joinSpecs(nodes, 'a1', [{ id: 'a2', mode: 'sync' }], new Set(['a2', 'b1']), 1);
    assert.deepEqual(syncOf(specs), ['a2']);
    assert.equal(specs.find((s) => s.id === 'b1')?.mode, 'async');
  });

  void test('a primary with no synchronous replica at all gets a fresh choice', () => {
    assert.deepEqual(syncOf(joinSpecs(nodes, 'a1', [], new Set(['a2', 'b1']), 1)), ['b1']);
  });
});

void describe('decideStandbySwitch', () => {
  const base = { nodes, primaryId: 'a1', count: 1, placement: 'prefer-other-zone' as const };

  void test('normal: the other-zone standby is in sync, nothing moves', () => {
    const replicas = [
      { id: 'a2', mode: 'async', state: 'in-sync' },
      { id: 'b1', mode: 'sync', state: 'in-sync' },
    ];
    assert.equal(decideStandbySwitch({ ...base, replicas }), undefined);
  });

  void test('the other zone is lost: the role falls back to the in-sync node of the primary’s zone', () => {
    const replicas = [
      { id: 'a2', mode: 'async', state: 'in-sync' },
      { id: 'b1', mode: 'sync', state: 'down' },
    ];
    const move = decideStandbySwitch({ ...base, replicas });
    assert.ok(move);
    assert.deepEqual(move.from, ['b1']);
    assert.deepEqual(move.to, ['a2']);
    assert.equal(move.placement, 'same-zone');
    assert.deepEqual(syncOf(move.replicas), ['a2']);
    assert.match(move.why, /not in sync/);
  });

  void test('the other zone is back and in sync: the role goes back to it', () => {
    const replicas = [
      { id: 'a2', mode: 'sync', state: 'in-sync' },
      { id: 'b1', mode: 'async', state: 'in-sync' },
    ];
    const move = decideStandbySwitch({ ...base, replicas });
    assert.deepEqual(move?.to, ['b1']);
    assert.equal(move?.placement, 'other-zone');
  });

  void test('while the other zone is still catching up, the in-sync same-zone standby keeps the role', () => {
    const replicas = [
      { id: 'a2', mode: 'sync', state: 'in-sync' },
      { id: 'b1', mode: 'async', state: 'catching-up' },
    ];
    assert.equal(decideStandbySwitch({ ...base, replicas }), undefined);
  });

  void test('no replica in sync at all: nothing to move to (the degrade policy decides)', () => {
    const replicas = [
      { id: 'a2', mode: 'async', state: 'down' },
      { id: 'b1', mode: 'sync', state: 'down' },
    ];
    assert.equal(decideStandbySwitch({ ...base, replicas }), undefined);
  });

  void test('"require-other-zone" does not fall back to the primary’s zone', () => {
    const replicas = [
      { id: 'a2', mode: 'async', state: 'in-sync' },
      { id: 'b1', mode: 'sync', state: 'down' },
    ];
    assert.equal(decideStandbySwitch({ ...base, placement: 'require-other-zone', replicas }), undefined);
  });

  void test('no synchronous replicas configured: never moves', () => {
    const replicas = [{ id: 'b1', mode: 'async', state: 'in-sync' }];
    assert.equal(decideStandbySwitch({ ...base, count: 0, replicas }), undefined);
  });
});

void describe('placementOf and zonesOf', () => {
  void test('other-zone, same-zone, or nothing without zones', () => {
    assert.equal(placementOf(nodes, 'a1', ['b1']), 'other-zone');
    assert.equal(placementOf(nodes, 'a1', ['a2']), 'same-zone');
    assert.equal(
      placementOf(
        nodes.map(({ id, url }) => ({ id, url })),
        'a1',
        ['b1'],
      ),
      undefined,
    );
    assert.deepEqual(zonesOf(nodes, ['b1']), { b1: 'b' });
  });
});

void describe('regionElsewhere', () => {
  const cluster = {
    name: 'kimiclaw',
    nodes: [
      { id: 'a1', region: 'a' },
      { id: 'b1', region: 'b' },
    ],
  };
  void test('a worker stands down while the primary is in another region, and only then', () => {
    assert.equal(regionElsewhere('a', cluster, { node: 'a1', epoch: 3 }), undefined);
    assert.equal(
      regionElsewhere('a', cluster, { node: 'b1', epoch: 4 }),
      'the primary of kimiclaw is b1 in region b (epoch 4); this worker runs in region a',
    );
    assert.equal(regionElsewhere('b', cluster, { node: 'b1', epoch: 4 }), undefined);
    assert.equal(regionElsewhere(undefined, cluster, { node: 'b1', epoch: 4 }), undefined, 'no regions configured');
    assert.equal(regionElsewhere('a', { name: 'x', nodes: [{ id: 'n1' }] }, { node: 'n1', epoch: 1 }), undefined);
  });
});

void describe('sentryNodes', () => {
  const nodes = [
    { id: 'a1', zone: 'a', region: 'r1' },
    { id: 'a2', zone: 'a', region: 'r1' },
    { id: 'b1', zone: 'b', region: 'r1' },
    { id: 'c1', zone: 'c', region: 'r2' },
  ];
  void test('one per zone of the home region, the first node of each in config order', () => {
    assert.deepEqual(sentryNodes('r1', nodes), ['a1', 'b1']);
    assert.deepEqual(sentryNodes(undefined, nodes), ['a1', 'b1', 'c1']);
  });
  void test('none without zones, or with one zone in the home region', () => {
    assert.deepEqual(sentryNodes(undefined, [{ id: 'n1' }, { id: 'n2' }]), []);
    assert.deepEqual(sentryNodes('r2', nodes), []);
    assert.deepEqual(sentryNodes('r1', nodes.slice(0, 2)), []);
  });
});
