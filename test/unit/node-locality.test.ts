/**
 * Node-local work only on the node's host: which nodes a worker owns (DR_NODES), the stores
 * refusing another node's directory (never an empty listing), where each tier's catalog lives,
 * and the two activity sets, whose types keep node work off the control queue.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createControlActivities,
  createNodeActivities,
  type ControlActivities,
  type NodeActivities,
} from '../../src/activities';
import { NotOnThisHost } from '../../src/errors';
import { catalogLocations, tierPolicy } from '../../src/backup/tier-policy';
import { parseConfig, type Config } from '../../src/config';
import { parseLocalNodes, resolveLocalNodes } from '../../src/local-nodes';
import { DrMetrics } from '../../src/metrics';
import { Stores } from '../../src/storage/stores';

let dir: string;
let config: Config;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kimiclaw-locality-test-'));
  config = parseConfig({
    temporal: { taskQueue: 'dr' },
    storage: { bucket: 'my-bucket', uploadLimitMiBps: 40, downloadLimitMiBps: 80 },
    databases: [
      {
        name: 'kimiclaw',
        nodes: [
          { id: 'node1', url: 'http://127.0.0.1:7171', dataDir: join(dir, 'node1') },
          { id: 'node2', url: 'http://127.0.0.1:7172', dataDir: join(dir, 'node2') },
        ],
      },
    ],
  });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('DR_NODES', () => {
  void test('unset or empty means every configured node; "none" means no node', () => {
    assert.equal(parseLocalNodes(undefined), undefined);
    assert.equal(parseLocalNodes(' '), undefined);
    assert.deepEqual(parseLocalNodes('none'), []);
    assert.deepEqual(parseLocalNodes('node1, node2'), ['node1', 'node2']);
    assert.deepEqual(resolveLocalNodes(config, undefined), ['node1', 'node2']);
    assert.deepEqual(resolveLocalNodes(config, []), []);
  });

  void test('an unknown node is refused, naming the configured ones', () => {
    assert.throws(
      () => resolveLocalNodes(config, ['node3']),
      /"node3", which is not a configured node \(node1, node2\)/,
    );
    assert.throws(() => resolveLocalNodes(config, ['node1', 'none']), /stands alone/);
  });
});

void describe('Stores on a host that owns some nodes', () => {
  void test("another node's L1 directory throws, naming the node, this host's nodes and the queue", async () => {
    const stores = new Stores(config, { localNodes: ['node1'] });
    assert.equal(stores.local('kimiclaw', 'node1').location, join(dir, 'node1', 'backups'));
    const refused = (fn: () => unknown) =>
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof NotOnThisHost, String(err));
        assert.match(err.message, /node node2 \(.*node2.*\) is not reachable here/);
        assert.match(err.message, /reachable here: node1\)/);
        assert.match(err.message, /task queue "dr-node-node2"/);
        return true;
      });
    refused(() => stores.local('kimiclaw', 'node2'));
    refused(() => stores.forTier('L1', 'kimiclaw', 'node2'));
    refused(() => stores.localNode('kimiclaw', 'node2'));
    assert.deepEqual(
      stores.localNodesOf('kimiclaw').map((n) => n.id),
      ['node1'],
    );
    // The bucket and a node's configuration are reachable from anywhere.
    assert.equal(stores.forTier('L2', 'kimiclaw').location, 's3://my-bucket/kimiclaw-dr');
    assert.equal(stores.node('kimiclaw', 'node2').id, 'node2');
    stores.destroy();
  });

  void test('a restricted view (a queue, the control set) reaches only what it is given', () => {
    const stores = new Stores(config);
    const control = stores.restrictedTo([]);
    assert.throws(() => control.local('kimiclaw', 'node1'), /reachable here: none\); .*"dr-node-node1"/);
    const node2 = stores.restrictedTo(['node2']);
    assert.throws(() => node2.local('kimiclaw', 'node1'), NotOnThisHost);
    assert.equal(node2.local('kimiclaw', 'node2').location, join(dir, 'node2', 'backups'));
    // A view cannot widen what its host owns.
    assert.throws(() =>
      new Stores(config, { localNodes: ['node1'] }).restrictedTo(['node2']).local('kimiclaw', 'node2'),
    );
    assert.equal(control.s3(), stores.s3(), 'views share one S3 client');
    stores.destroy();
  });
});

void describe('tier policy', () => {
  void test('L1 catalogs live on each node, on its queue; L2 and L3 in the bucket, on the control queue', () => {
    assert.deepEqual(catalogLocations(config, config.databases[0]!), [
      { tier: 'L1', node: 'node1', taskQueue: 'dr-node-node1' },
      { tier: 'L1', node: 'node2', taskQueue: 'dr-node-node2' },
      { tier: 'L2', taskQueue: 'dr' },
      { tier: 'L3', taskQueue: 'dr' },
    ]);
  });

  void test('transfer limits, storage class and Object Lock apply to the bucket tiers only', () => {
    const node = config.databases[0]!.nodes[1]!;
    const l1 = tierPolicy(config, 'L1', node);
    assert.deepEqual(l1, {
      catalog: { tier: 'L1', node: 'node2', taskQueue: 'dr-node-node2' },
      inBucket: false,
      lockable: false,
      retentionMs: 24 * 3_600_000,
    });
    const l3 = tierPolicy(config, 'L3', node);
    assert.equal(l3.inBucket, true);
    assert.equal(l3.lockable, true);
    assert.equal(l3.storageClass, 'GLACIER');
    assert.equal(l3.uploadLimitMiBps, 40);
    assert.equal(l3.downloadLimitMiBps, 80);
    assert.equal(tierPolicy(config, 'L2', node).lockable, false);
  });
});

void describe('activity sets', () => {
  const DISK_WORK = [
    'snapshotDatabase',
    'verifySnapshot',
    'storeArtifact',
    'discardSnapshot',
    'planRestoreFor',
    'stageBackup',
    'replayLog',
    'swapIn',
    'swapBack',
    'removeStaging',
  ] as const;

  void test('the control set has no node work; the node set has no control work', () => {
    const stores = new Stores(config);
    const metrics = new DrMetrics();
    const control = createControlActivities({ config, stores, metrics });
    const node = createNodeActivities({ config, stores, metrics, node: 'node1' });
    for (const name of DISK_WORK) {
      assert.ok(!(name in control), `${name} is not a control activity`);
      assert.ok(name in node, `${name} is a node activity`);
    }
    for (const name of ['resolveBackupTarget', 'resolveRestoreTarget', 'retireArchiveAfter', 'promoteNode'])
      assert.ok(!(name in node), `${name} is not a node activity`);
    // Both reach a tier's catalog, each where it lives.
    for (const name of ['writeManifest', 'pruneTier', 'markBackupsBadAfter', 'newestBackup'])
      assert.ok(name in control && name in node, `${name} is in both sets`);
    stores.destroy();
  });

  void test('node work on the control queue does not compile', () => {
    // Checked by `tsc` (part of the test run): each line below must be a type error.
    const onControl = {} as ControlActivities;
    const onNode = {} as NodeActivities;
    // @ts-expect-error snapshots are taken on the node's host
    assert.equal(onControl.snapshotDatabase, undefined);
    // @ts-expect-error staging writes to the node's disk
    assert.equal(onControl.stageBackup, undefined);
    // @ts-expect-error planning reads the node's own L1 catalog
    assert.equal(onControl.planRestoreFor, undefined);
    // @ts-expect-error promotion is a control decision
    assert.equal(onNode.promoteNode, undefined);
  });

  void test("the control set's catalog refuses an L1 directory instead of reading it as empty", async () => {
    const stores = new Stores(config);
    const control = createControlActivities({ config, stores, metrics: new DrMetrics() });
    await assert.rejects(control.newestBackup({ database: 'kimiclaw', tier: 'L1', node: 'node1' }), (err: unknown) => {
      assert.match(String((err as Error).message), /L1 directory of node node1 .* task queue "dr-node-node1"/);
      assert.equal((err as { type?: string }).type, 'NotOnThisHost');
      assert.equal((err as { nonRetryable?: boolean }).nonRetryable, true);
      return true;
    });
    const node2 = createNodeActivities({ config, stores, metrics: new DrMetrics(), node: 'node2' });
    await assert.rejects(node2.newestBackup({ database: 'kimiclaw', tier: 'L1', node: 'node1' }), /node node1/);
    assert.equal(await node2.newestBackup({ database: 'kimiclaw', tier: 'L1', node: 'node2' }), null);
    stores.destroy();
  });
});
