/**
 * Restoring a backup made before fingerprint versions (a version-1 manifest and file) with the
 * restore workflow against real servers: it is verified in version 1, recorded in version 2 before
 * the log is replayed onto it, and the node runs on version 2 afterwards; and once DuckDB's hash()
 * is taken to have changed (a sidecar recording another known answer), a scratch restore verifies
 * it by SHA-256 and the codec alone and its result says so.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeSegment } from '../src/archive/segment';
import { fingerprintSidecarKey } from '../src/backup/fingerprint-sidecar';
import { V1_KNOWN_ANSWER } from '../src/duckdb/known-answer';
import { fingerprintFile } from '../src/duckdb/verify';
import { NodeClient } from '../src/node-client';
import { segmentKey } from '../src/restore/segments';
import type { RestoreInput } from '../src/restore/input';
import { Stores } from '../src/storage/stores';
import type { restore } from '../src/workflows';
import { Harness, NODE_CREDENTIAL } from './harness';
import { putVersion1Backup, writeVersion1File } from './version1';

const BACKUP_ID = 'kimiclaw-L2-20260101T000000Z-0c1d';

let h: Harness;
let stores: Stores;
let node: NodeClient;
let sourcePath: string;

before(async () => {
  h = await Harness.start();
  stores = new Stores(h.config);
  node = new NodeClient('node1', h.nodes[0]!.url, NODE_CREDENTIAL);
  sourcePath = join(h.dir, 'v1-source', 'kimiclaw.duckdb');
  await writeVersion1File(sourcePath);
  await putVersion1Backup(stores.s3(), BACKUP_ID, sourcePath);
  // Three archived batches after the backup's LSN 100: the restore replays them onto it.
  const events = [101, 102, 103].flatMap((lsn) =>
    [0, 1].map((i) => ({
      id: 1000 + (lsn - 101) * 2 + i + 1,
      lsn,
      ts: `2026-01-01T00:10:00.00000${i}Z`,
      kind: 'replayed',
      payload: JSON.stringify({ lsn, i, s: 'ü' }),
    })),
  );
  const segment = await encodeSegment(events);
  await stores.s3().putBytes(segmentKey('kimiclaw', 101, 103, 1), segment.body, {
    sha256: segment.sha256,
    rows: String(segment.rows),
    'first-ts': segment.firstTs,
    'last-ts': segment.lastTs,
  });
});

after(async () => {
  stores?.destroy();
  await h?.stop();
});

let seq = 0;
async function runRestore(input: RestoreInput) {
  const handle = await h.client.workflow.start<typeof restore>('restore', {
    taskQueue: h.taskQueue,
    workflowId: `fingerprint-restore-${Date.now()}-${seq++}`,
    args: [input],
  });
  return handle.result();
}

void describe('restoring a version-1 backup', () => {
  void test('in place: verified in version 1, replayed and opened in version 2', async () => {
    const result = await runRestore({ backupId: BACKUP_ID });
    assert.deepEqual(result.verification!, { fingerprintVersion: 1, verifiedBy: 'recorded-checksum' });
    assert.equal(result.rowsReplayed, 6);
    assert.equal(result.finalLsn, 103);

    const stats = await node.stats();
    assert.equal(stats.fingerprintVersion, 2);
    assert.equal(stats.rows, 1006);
    // The full scan of /stats equals the checksum the node keeps (a snapshot reports that one).
    const snapshot = await node.snapshot(join(h.nodes[0]!.dataDir, 'check.duckdb'));
    assert.deepEqual([snapshot.fingerprintVersion, snapshot.checksum], [2, stats.checksum]);
    // And its first 1,000 rows are the backup's, in version 2.
    assert.equal((await node.stats(100)).checksum, (await fingerprintFile(sourcePath)).checksum);
  });

  void test('to scratch with hash() changed: verified by SHA-256 and the codec alone, and said so', async () => {
    const key = fingerprintSidecarKey('kimiclaw', 'L2', BACKUP_ID);
    await stores.s3().putJson(key, { format: 1, v1KnownAnswer: { ...V1_KNOWN_ANSWER, hash: '42', duckdb: 'v1.2.2' } });
    try {
      const result = await runRestore({ backupId: BACKUP_ID, target: 'scratch' });
      assert.equal(result.verification!.fingerprintVersion, 1);
      assert.equal(result.verification!.verifiedBy, 'sha256+codec');
      assert.match(
        result.verification!.checksumSkipped ?? '',
        /where DuckDB v1\.2\.2 computed 42: hash\(\) has changed/,
      );
      assert.equal(result.rows, 1006);
      // The staged copy was recorded in version 2 and carries its replayed rows.
      const staged = await fingerprintFile(result.path!);
      assert.deepEqual([staged.fingerprintVersion, staged.rows], [2, 1006]);
    } finally {
      await stores.s3().deleteKeys([key]);
    }
  });
});
