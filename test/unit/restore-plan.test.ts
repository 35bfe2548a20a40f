import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Tier } from '../../src/domain';
import { backupId } from '../../src/backup/ids';
import { MANIFEST_FORMAT, type Manifest } from '../../src/backup/manifest';
import { RestoreInputSchema, type RestoreInput } from '../../src/restore/input';
import {
  inUseBackupIds,
  needsRetrieval,
  planRestore,
  type PlanRestoreArgs,
  type RestorePlan,
} from '../../src/restore/plan';
import { segmentKey, type Segment } from '../../src/restore/segments';

const NOW = new Date('2026-06-01T12:00:00.000Z');

interface BackupSpec {
  tier: Tier;
  at: string;
  lsn: number;
  rows?: number;
  node?: string;
  storageClass?: string;
  bad?: boolean;
  database?: string;
  run?: string;
}

function manifest(spec: BackupSpec): Manifest {
  const database = spec.database ?? 'kimiclaw';
  const createdAt = new Date(spec.at);
  const id = backupId(database, spec.tier, createdAt, spec.run ?? '0000');
  return {
    format: MANIFEST_FORMAT,
    backupId: id,
    database,
    tier: spec.tier,
    node: spec.node ?? 'node1',
    createdAt: createdAt.toISOString(),
    completedAt: new Date(createdAt.getTime() + 60_000).toISOString(),
    workflowId: `backup-${id}`,
    runId: 'run',
    snapshot: {
      rows: spec.rows ?? spec.lsn * 10,
      minId: 1,
      maxId: spec.rows ?? spec.lsn * 10,
      maxLsn: spec.lsn,
      checksum: '1',
      fingerprintVersion: 2,
      lsn: spec.lsn,
      bytes: 1,
      stallMs: 0,
    },
    artifact: {
      key: `${database}/${spec.tier}/${id}/${database}.duckdb.zst`,
      compression: 'zstd',
      level: 1,
      bytes: 1,
      sha256: 'a'.repeat(64),
      ...(spec.storageClass ? { storageClass: spec.storageClass } : {}),
    },
    verifiedAt: createdAt.toISOString(),
    ...(spec.bad ? { bad: { at: '2026-06-01T11:30:00.000Z', reason: 'checksum mismatch' } } : {}),
  };
}

/** A segment with 10 rows per LSN, or the rows given, or none known ('unknown'). */
function seg(startLsn: number, endLsn: number, rows: number | 'unknown' = (endLsn - startLsn + 1) * 10): Segment {
  return {
    startLsn,
    endLsn,
    key: segmentKey('kimiclaw', startLsn, endLsn, 1),
    ...(rows === 'unknown' ? {} : { rows }),
  };
}

// The usual catalog: a monthly archive, yesterday's daily, this hour's local snapshot.
const L3 = manifest({ tier: 'L3', at: '2026-05-01T04:00:00Z', lsn: 100, storageClass: 'GLACIER' });
const L2 = manifest({ tier: 'L2', at: '2026-05-31T03:00:00Z', lsn: 1000, storageClass: 'STANDARD' });
const L1 = manifest({ tier: 'L1', at: '2026-06-01T11:00:00Z', lsn: 1200, node: 'node1' });
const BACKUPS = [L2, L1, L3];
const SEGMENTS = [seg(101, 500), seg(501, 1000), seg(1001, 1200), seg(1201, 1300), seg(1301, 1350), seg(1351, 1375)];

function request(input: RestoreInput = {}) {
  return RestoreInputSchema.parse(input);
}

function plan(input: RestoreInput = {}, extra: Partial<PlanRestoreArgs> = {}): RestorePlan {
  const result = planRestore({ backups: BACKUPS, segments: SEGMENTS, request: request(input), now: NOW, ...extra });
  assert.ok(result.ok, result.ok ? '' : `${result.field}: ${result.message}`);
  return result.plan;
}

function refusal(input: RestoreInput = {}, extra: Partial<PlanRestoreArgs> = {}) {
  const result = planRestore({ backups: BACKUPS, segments: SEGMENTS, request: request(input), now: NOW, ...extra });
  assert.equal(result.ok, false, `expected a refusal, got ${result.ok ? result.plan.reason : ''}`);
  return result.ok ? { field: '', message: '' } : { field: result.field, message: result.message };
}

function steps(p: RestorePlan): string[] {
  return p.replay.map((s) => `${s.segment.startLsn}-${s.segment.endLsn}:${s.fromLsn}-${s.toLsn}`);
}

function ids(backups: readonly Manifest[]): string[] {
  return backups.map((b) => b.backupId);
}

void describe('planRestore: everything archived (no toLsn, no pointInTime)', () => {
  void test('newest backup, rolled forward to the end of the archive', () => {
    const p = plan();
    assert.equal(p.backup, L1);
    assert.equal(p.tier, 'L1');
    assert.equal(p.database, 'kimiclaw');
    assert.equal(p.targetKind, 'archived');
    assert.equal(p.targetLsn, 1375);
    assert.deepEqual(steps(p), ['1201-1300:1201-1300', '1301-1350:1301-1350', '1351-1375:1351-1375']);
    assert.equal(p.replayRows, 1750);
    assert.equal(p.expectedRows, 12000 + 1750);
    assert.equal(p.needsRetrieval, false);
    assert.equal(p.notRestored, undefined);
    assert.deepEqual(ids(p.fallbacks), [L2.backupId, L3.backupId]);
    assert.equal(
      p.reason,
      `newest verified backup: ${L1.backupId} (L1 on node1), then 3 archive segments, LSN 1201 → 1375 (end of the log archive)`,
    );
  });

  void test('with a gap, the target is where coverage from the newest backup stops', () => {
    const segments = SEGMENTS.filter((s) => s.startLsn !== 1301);
    const p = plan({}, { segments });
    assert.equal(p.backup, L1);
    assert.equal(p.targetLsn, 1300);
    assert.deepEqual(steps(p), ['1201-1300:1201-1300']);
    assert.match(p.reason, /then 1 archive segment, LSN 1201 → 1300 \(end of the log archive\)$/);
  });

  void test('no archive after the backup: the backup alone, nothing to replay', () => {
    const p = plan({}, { segments: [] });
    assert.equal(p.backup, L1);
    assert.equal(p.targetLsn, 1200);
    assert.deepEqual(p.replay, []);
    assert.equal(p.replayRows, 0);
    assert.equal(p.expectedRows, 12000);
    // Older backups cannot reach LSN 1200 without the archive.
    assert.deepEqual(p.fallbacks, []);
    assert.equal(
      p.reason,
      `newest verified backup: ${L1.backupId} (L1 on node1), nothing to replay (backup at LSN 1200) (end of the log archive)`,
    );
  });

  void test('LSNs the live node has beyond the archive are named as not restored', () => {
    const p = plan({}, { headLsn: 1400 });
    assert.deepEqual(p.notRestored, { fromLsn: 1376, toLsn: 1400 });
    assert.match(p.reason, /; LSN 1376 → 1400 on the live node are not in the archive and are not restored$/);
    assert.equal(plan({}, { headLsn: 1375 }).notRestored, undefined);
    assert.equal(plan({}, { headLsn: 10 }).notRestored, undefined);
  });

  void test('fallbacks are only backups that reach the same target', () => {
    // A gap at 501-1000 leaves the L3 at LSN 100 stuck at 500.
    const segments = SEGMENTS.filter((s) => s.startLsn !== 501);
    assert.deepEqual(ids(plan({}, { segments }).fallbacks), [L2.backupId]);
  });
});

void describe('planRestore: toLsn', () => {
  void test('the newest backup at or before toLsn; the last segment is cut at toLsn', () => {
    const p = plan({ toLsn: 1250 });
    assert.equal(p.backup, L1);
    assert.equal(p.targetKind, 'lsn');
    assert.equal(p.targetLsn, 1250);
    assert.deepEqual(steps(p), ['1201-1300:1201-1250']);
    // Rows of a cut segment are not known.
    assert.equal(p.replayRows, undefined);
    assert.equal(p.expectedRows, undefined);
    assert.equal(
      p.reason,
      `newest verified backup at or before LSN 1250: ${L1.backupId} (L1 on node1), then 1 archive segment, LSN 1201 → 1250`,
    );
  });

  void test('toLsn on a segment boundary: whole segments, rows known', () => {
    const p = plan({ toLsn: 1350 });
    assert.deepEqual(steps(p), ['1201-1300:1201-1300', '1301-1350:1301-1350']);
    assert.equal(p.replayRows, 1500);
    assert.equal(p.expectedRows, 13500);
  });

  void test('a backup taken after toLsn is passed over for an older one', () => {
    const p = plan({ toLsn: 1150 });
    assert.equal(p.backup, L2);
    assert.deepEqual(steps(p), ['1001-1200:1001-1150']);
    assert.deepEqual(ids(p.fallbacks), [L3.backupId]);
    assert.match(p.reason, new RegExp(`^newest verified backup at or before LSN 1150: ${L2.backupId} \\(L2\\), then`));
  });

  void test('toLsn equal to a backup LSN: that backup, nothing to replay', () => {
    const p = plan({ toLsn: 1200 });
    assert.equal(p.backup, L1);
    assert.deepEqual(p.replay, []);
    assert.equal(p.expectedRows, 12000);
    assert.deepEqual(ids(p.fallbacks), [L2.backupId, L3.backupId]);
    assert.match(p.reason, /nothing to replay \(backup at LSN 1200\)$/);
  });

  void test('toLsn before every backup is refused, naming the oldest', () => {
    assert.deepEqual(refusal({ toLsn: 50 }), {
      field: 'toLsn',
      message: `no usable backup at or before the requested point (LSN 50); the oldest usable, ${L3.backupId}, was taken at LSN 100`,
    });
  });

  void test('toLsn beyond the archive is refused, saying where it ends', () => {
    assert.deepEqual(refusal({ toLsn: 1400 }), {
      field: 'toLsn',
      message: `the log archive ends at LSN 1375: backup ${L1.backupId} (LSN 1200) rolls forward to LSN 1375 at most, not to the requested point (LSN 1400)`,
    });
    assert.match(
      refusal({ toLsn: 1400 }, { headLsn: 1420 }).message,
      /not to the requested point \(LSN 1400\); the live node is at LSN 1420, the rest is not archived$/,
    );
  });

  void test('toLsn past a gap is refused, naming the gap', () => {
    const segments = SEGMENTS.filter((s) => s.startLsn !== 1301);
    assert.deepEqual(refusal({ toLsn: 1360 }, { segments }), {
      field: 'toLsn',
      message: `the log archive has a gap after LSN 1300 (the next segment starts at LSN 1351): backup ${L1.backupId} (LSN 1200) rolls forward to LSN 1300 at most, not to the requested point (LSN 1360)`,
    });
    // Up to the gap is fine.
    assert.equal(plan({ toLsn: 1300 }, { segments }).targetLsn, 1300);
  });

  void test('a gap before the newest backup only rules out the older ones', () => {
    const segments = SEGMENTS.filter((s) => s.startLsn !== 1001);
    const p = plan({ toLsn: 1375 }, { segments });
    assert.equal(p.backup, L1);
    assert.deepEqual(p.fallbacks, []);
    // For a target before L1, the gap blocks L2 and L3 both.
    assert.match(refusal({ toLsn: 1100 }, { segments }).message, /^the log archive has a gap after LSN 1000 /);
  });

  void test('LSNs after the target on the live node are named as not restored', () => {
    const p = plan({ toLsn: 1250 }, { headLsn: 1375 });
    assert.deepEqual(p.notRestored, { fromLsn: 1251, toLsn: 1375 });
    assert.match(p.reason, /; LSN 1251 → 1375 on the live node are not restored$/);
  });

  void test('toLsn 0 restores an empty database from a backup at LSN 0', () => {
    const empty = manifest({ tier: 'L2', at: '2026-04-01T03:00:00Z', lsn: 0, rows: 0 });
    const p = plan({ toLsn: 0 }, { backups: [...BACKUPS, empty] });
    assert.equal(p.backup, empty);
    assert.equal(p.expectedRows, 0);
  });
});

void describe('planRestore: pointInTime', () => {
  const PIT = '2026-06-01T11:30:00Z';

  void test('uses the LSN the caller resolved, and says which time it stands for', () => {
    const p = plan({ pointInTime: PIT }, { targetLsnForTime: 1320 });
    assert.equal(p.backup, L1);
    assert.equal(p.targetKind, 'pointInTime');
    assert.equal(p.targetLsn, 1320);
    assert.deepEqual(steps(p), ['1201-1300:1201-1300', '1301-1350:1301-1320']);
    assert.equal(
      p.reason,
      `newest verified backup at or before LSN 1320, pointInTime 2026-06-01T11:30:00.000000Z: ${L1.backupId} (L1 on node1), then 2 archive segments, LSN 1201 → 1320`,
    );
  });

  void test('a pointInTime in the future is refused; now itself is not', () => {
    assert.deepEqual(refusal({ pointInTime: '2026-06-01T12:00:00.000001Z' }, { targetLsnForTime: 1375 }), {
      field: 'pointInTime',
      message: '2026-06-01T12:00:00.000001Z is in the future (now 2026-06-01T12:00:00.000000Z)',
    });
    assert.equal(
      refusal({ pointInTime: '2026-06-01T15:00:00+02:00' }, { targetLsnForTime: 1375 }).message,
      '2026-06-01T13:00:00.000000Z is in the future (now 2026-06-01T12:00:00.000000Z)',
    );
    assert.equal(plan({ pointInTime: '2026-06-01T12:00:00Z' }, { targetLsnForTime: 1375 }).targetLsn, 1375);
  });

  void test('a pointInTime before the oldest usable backup is refused, naming it and its time', () => {
    assert.deepEqual(refusal({ pointInTime: '2026-04-30T23:59:59Z' }, { targetLsnForTime: 0 }), {
      field: 'pointInTime',
      message: `2026-04-30T23:59:59.000000Z is before the oldest usable backup, ${L3.backupId}, taken at 2026-05-01T04:00:00.000Z`,
    });
  });

  void test('"oldest usable" leaves out bad and excluded backups', () => {
    const badL3 = { ...L3, bad: { at: '2026-06-01T00:00:00Z', reason: 'checksum mismatch' } };
    assert.match(
      refusal({ pointInTime: '2026-05-15T00:00:00Z' }, { targetLsnForTime: 500, backups: [L1, L2, badL3] }).message,
      new RegExp(`before the oldest usable backup, ${L2.backupId}, taken at 2026-05-31T03:00:00.000Z$`),
    );
    assert.match(
      refusal({ pointInTime: '2026-05-15T00:00:00Z' }, { targetLsnForTime: 500, excluded: [L3.backupId] }).message,
      new RegExp(`oldest usable backup, ${L2.backupId},`),
    );
  });

  void test('an archive-class backup still counts for how far back one can go', () => {
    const p = plan({ pointInTime: '2026-05-15T00:00:00Z' }, { targetLsnForTime: 300 });
    assert.equal(p.backup, L3);
    assert.equal(p.needsRetrieval, true);
    assert.deepEqual(steps(p), ['101-500:101-300']);
    assert.equal(
      p.reason,
      `newest verified backup at or before LSN 300, pointInTime 2026-05-15T00:00:00.000000Z: ${L3.backupId} (L3, GLACIER), then 1 archive segment, LSN 101 → 300; needs retrieval from GLACIER first`,
    );
  });

  void test('a pointInTime after a backup was started but before its snapshot LSN falls back to an older one', () => {
    // The caller resolved the time to LSN 1190 although L1 was created before it: the LSN decides.
    const p = plan({ pointInTime: '2026-06-01T11:00:30Z' }, { targetLsnForTime: 1190 });
    assert.equal(p.backup, L2);
  });

  void test('pointInTime without a resolved LSN is a caller bug', () => {
    assert.throws(
      () => planRestore({ backups: BACKUPS, segments: SEGMENTS, request: request({ pointInTime: PIT }), now: NOW }),
      /pointInTime was given but not resolved to targetLsnForTime/,
    );
    assert.throws(() => plan({ pointInTime: PIT }, { targetLsnForTime: -1 }), RangeError);
    assert.throws(() => plan({ pointInTime: PIT }, { targetLsnForTime: 1.5 }), RangeError);
  });

  void test('targetLsnForTime is ignored without pointInTime', () => {
    assert.equal(plan({}, { targetLsnForTime: 1250 }).targetLsn, 1375);
    assert.equal(plan({ toLsn: 1300 }, { targetLsnForTime: 1250 }).targetLsn, 1300);
  });

  void test('pointInTime past the archive is refused with the gap, on the pointInTime field', () => {
    const segments = SEGMENTS.filter((s) => s.startLsn !== 1301);
    const r = refusal({ pointInTime: PIT }, { targetLsnForTime: 1360, segments });
    assert.equal(r.field, 'pointInTime');
    assert.match(
      r.message,
      /gap after LSN 1300 .* not to the requested point \(LSN 1360, pointInTime 2026-06-01T11:30:00.000000Z\)$/,
    );
  });

  void test('pointInTime and toLsn together are refused even when the input skipped the schema', () => {
    const req = { ...request({ toLsn: 5 }), pointInTime: PIT };
    const result = planRestore({ backups: BACKUPS, segments: SEGMENTS, request: req, now: NOW, targetLsnForTime: 5 });
    assert.deepEqual(result, { ok: false, field: 'toLsn', message: 'give pointInTime or toLsn, not both' });
  });

  void test('an unparseable pointInTime is refused even when the input skipped the schema', () => {
    const req = { ...request(), pointInTime: 'soon' };
    const result = planRestore({ backups: BACKUPS, segments: SEGMENTS, request: req, now: NOW, targetLsnForTime: 5 });
    assert.deepEqual(result, {
      ok: false,
      field: 'pointInTime',
      message: '"soon" is not an ISO-8601 time with a timezone',
    });
  });
});

void describe('planRestore: backupId', () => {
  void test('a named backup is used, and nothing is substituted for it', () => {
    const p = plan({ backupId: L2.backupId });
    assert.equal(p.backup, L2);
    assert.equal(p.targetLsn, 1375);
    assert.deepEqual(steps(p), [
      '1001-1200:1001-1200',
      '1201-1300:1201-1300',
      '1301-1350:1301-1350',
      '1351-1375:1351-1375',
    ]);
    assert.deepEqual(p.fallbacks, []);
    assert.equal(
      p.reason,
      `requested backup: ${L2.backupId} (L2), then 4 archive segments, LSN 1001 → 1375 (end of the log archive)`,
    );
  });

  void test('a named backup with a target before it is refused (backupId and point conflict)', () => {
    assert.deepEqual(refusal({ backupId: L1.backupId, toLsn: 1150 }), {
      field: 'backupId',
      message: `backup ${L1.backupId} was taken at LSN 1200, after the requested point (LSN 1150); leave backupId out to use the newest backup at or before it`,
    });
    assert.deepEqual(
      refusal({ backupId: L1.backupId, pointInTime: '2026-06-01T10:00:00Z' }, { targetLsnForTime: 1100 }),
      {
        field: 'backupId',
        message: `backup ${L1.backupId} was taken at LSN 1200, after the requested point (LSN 1100, pointInTime 2026-06-01T10:00:00.000000Z); leave backupId out to use the newest backup at or before it`,
      },
    );
  });

  void test('a named backup with a target at or after it is rolled forward', () => {
    const p = plan({ backupId: L2.backupId, toLsn: 1200 });
    assert.equal(p.backup, L2);
    assert.deepEqual(steps(p), ['1001-1200:1001-1200']);
    assert.equal(plan({ backupId: L1.backupId, toLsn: 1200 }).replay.length, 0);
  });

  void test('an unknown backup is refused', () => {
    const id = 'kimiclaw-L2-20260101T030000Z-beef';
    assert.deepEqual(refusal({ backupId: id }), { field: 'backupId', message: `no backup ${id}` });
  });

  void test("an L1 backup the node does not hold is refused, saying L1 stays on its node's disk", () => {
    const id = 'kimiclaw-L1-20260101T030000Z-beef';
    assert.deepEqual(refusal({ backupId: id, node: 'node1' }), {
      field: 'backupId',
      message: `no backup ${id} on node node1 (an L1 backup is restored only on the node whose disk holds it)`,
    });
  });

  void test("another database's manifest in the list is never used", () => {
    const other = manifest({ tier: 'L1', at: '2026-06-01T11:30:00Z', lsn: 1370, database: 'billing' });
    const p = plan({}, { backups: [...BACKUPS, other] });
    assert.equal(p.backup, L1);
    assert.ok(!inUseBackupIds(p).includes(other.backupId));
    // Even named directly (an input that skipped the schema).
    const req = { ...request(), backupId: other.backupId };
    const result = planRestore({ backups: [...BACKUPS, other], segments: SEGMENTS, request: req, now: NOW });
    assert.deepEqual(result, { ok: false, field: 'backupId', message: `no backup ${other.backupId}` });
  });

  void test('a backup marked bad is refused, with the reason', () => {
    const bad = manifest({ tier: 'L2', at: '2026-05-30T03:00:00Z', lsn: 900, bad: true });
    assert.deepEqual(refusal({ backupId: bad.backupId }, { backups: [...BACKUPS, bad] }), {
      field: 'backupId',
      message: `backup ${bad.backupId} is marked bad (checksum mismatch, at 2026-06-01T11:30:00.000Z); name another backup or leave backupId out`,
    });
  });

  void test('a backup found bad during this restore is refused', () => {
    assert.deepEqual(refusal({ backupId: L2.backupId }, { excluded: [L2.backupId] }), {
      field: 'backupId',
      message: `backup ${L2.backupId} was found bad during this restore; name another backup or leave backupId out`,
    });
  });

  void test("another node's L1 cannot be restored on the node named", () => {
    assert.deepEqual(refusal({ backupId: L1.backupId, node: 'node2' }), {
      field: 'backupId',
      message: `backup ${L1.backupId} is an L1 backup on the disk of node node1; it cannot be restored on node node2`,
    });
    assert.equal(plan({ backupId: L1.backupId, node: 'node1' }).backup, L1);
    assert.equal(plan({ backupId: L1.backupId }).backup, L1);
    // L2 and L3 live in the object store: any node can use them.
    assert.equal(plan({ backupId: L2.backupId, node: 'node2' }).backup, L2);
  });
});

void describe('planRestore: backupId "latest"', () => {
  void test('the newest usable backup, with fallbacks', () => {
    const p = plan({ backupId: 'latest' });
    assert.equal(p.backup, L1);
    assert.equal(p.targetLsn, 1375);
    assert.deepEqual(ids(p.fallbacks), [L2.backupId, L3.backupId]);
    assert.match(p.reason, new RegExp(`^latest verified backup: ${L1.backupId} \\(L1 on node1\\), then 3 archive`));
  });

  void test('skips bad and excluded backups', () => {
    assert.equal(plan({ backupId: 'latest' }, { excluded: [L1.backupId] }).backup, L2);
    const badL1 = { ...L1, bad: { at: '2026-06-01T11:30:00Z', reason: 'torn' } };
    assert.equal(plan({ backupId: 'latest' }, { backups: [badL1, L2, L3] }).backup, L2);
  });

  void test('"latest" with a target before it is refused, not quietly swapped', () => {
    assert.deepEqual(refusal({ backupId: 'latest', toLsn: 1100 }), {
      field: 'backupId',
      message: `backup ${L1.backupId} was taken at LSN 1200, after the requested point (LSN 1100); leave backupId out to use the newest backup at or before it`,
    });
  });

  void test('"latest" on a named node leaves out other nodes\' L1', () => {
    assert.equal(plan({ backupId: 'latest', node: 'node2' }).backup, L2);
  });
});

void describe('planRestore: choosing among backups', () => {
  void test('ties on LSN prefer L1, then L2, then L3', () => {
    const t1 = manifest({ tier: 'L1', at: '2026-06-01T04:00:00Z', lsn: 1000, run: '0001' });
    const t3 = manifest({ tier: 'L3', at: '2026-06-01T04:00:00Z', lsn: 1000, storageClass: 'STANDARD' });
    for (const order of [
      [t3, L2, t1],
      [L2, t3, t1],
      [t1, t3, L2],
    ]) {
      const p = plan({ toLsn: 1100 }, { backups: order });
      assert.equal(p.backup, t1);
      assert.deepEqual(ids(p.fallbacks), [L2.backupId, t3.backupId]);
    }
  });

  void test('ties with a cold L3: L1 and L2 still come first', () => {
    const t1 = manifest({ tier: 'L1', at: '2026-06-01T04:00:00Z', lsn: 1000, run: '0001' });
    const t3 = manifest({ tier: 'L3', at: '2026-06-01T04:00:00Z', lsn: 1000, storageClass: 'GLACIER' });
    assert.deepEqual(ids(plan({ toLsn: 1100 }, { backups: [t3, L2, t1] }).fallbacks), [L2.backupId, t3.backupId]);
  });

  void test('same LSN and tier: the later created wins', () => {
    const a = manifest({ tier: 'L2', at: '2026-05-31T03:00:00Z', lsn: 1000, run: '000a' });
    const b = manifest({ tier: 'L2', at: '2026-05-31T03:05:00Z', lsn: 1000, run: '000b' });
    assert.equal(plan({ toLsn: 1000 }, { backups: [a, b] }).backup, b);
    assert.equal(plan({ toLsn: 1000 }, { backups: [b, a] }).backup, b);
  });

  void test('a newer backup in an archive class is passed over for one readable now', () => {
    // The monthly archive is taken an hour after the daily: restoring from it would wait hours
    // for a retrieval to save replaying an hour of log.
    const cold = manifest({ tier: 'L3', at: '2026-05-31T04:00:00Z', lsn: 1100, storageClass: 'GLACIER' });
    const p = plan({ toLsn: 1150 }, { backups: [L2, cold] });
    assert.equal(p.backup, L2);
    assert.equal(p.needsRetrieval, false);
    assert.deepEqual(ids(p.fallbacks), [cold.backupId]);
    assert.match(p.reason, new RegExp(`; passed over newer ${cold.backupId}: needs retrieval from an archive class$`));
  });

  void test('...unless only the archive-class backup reaches the target', () => {
    const cold = manifest({ tier: 'L3', at: '2026-05-31T04:00:00Z', lsn: 1100, storageClass: 'DEEP_ARCHIVE' });
    const segments = [seg(1001, 1050), seg(1101, 1200)]; // 1051-1100 missing: L2 cannot get past 1050
    const p = plan({ toLsn: 1150 }, { backups: [L2, cold], segments });
    assert.equal(p.backup, cold);
    assert.equal(p.needsRetrieval, true);
    assert.deepEqual(p.fallbacks, []);
    assert.match(p.reason, /; needs retrieval from DEEP_ARCHIVE first$/);
    // Everything archived: the archive-class backup reaches further, so it is the one.
    const all = plan({}, { backups: [L2, cold], segments });
    assert.equal(all.backup, cold);
    assert.equal(all.targetLsn, 1200);
  });

  void test("when a named node is given, other nodes' L1 are not candidates", () => {
    const n2 = manifest({ tier: 'L1', at: '2026-06-01T10:00:00Z', lsn: 1150, node: 'node2' });
    const backups = [...BACKUPS, n2];
    const p = plan({ node: 'node2' }, { backups });
    assert.equal(p.backup, n2);
    assert.equal(p.targetLsn, 1375);
    assert.deepEqual(ids(p.fallbacks), [L2.backupId, L3.backupId]);
    assert.ok(!inUseBackupIds(p).includes(L1.backupId));
    assert.equal(p.reason.includes('(L1 on node2)'), true);
    // Without a node, every L1 counts.
    assert.deepEqual(ids(plan({}, { backups }).fallbacks), [n2.backupId, L2.backupId, L3.backupId]);
    // A node with no L1 of its own uses the object store.
    assert.equal(plan({ node: 'node3' }, { backups }).backup, L2);
  });

  void test('excluded backups: fall back in order, saying what was passed over', () => {
    const first = plan({}, { excluded: [L1.backupId] });
    assert.equal(first.backup, L2);
    assert.deepEqual(ids(first.fallbacks), [L3.backupId]);
    assert.match(first.reason, new RegExp(`; passed over ${L1.backupId}: found bad during this restore$`));

    const second = plan({}, { excluded: [L1.backupId, L2.backupId] });
    assert.equal(second.backup, L3);
    assert.equal(second.needsRetrieval, true);
    assert.deepEqual(second.fallbacks, []);
    assert.equal(second.targetLsn, 1375);
    assert.match(
      second.reason,
      new RegExp(`; passed over ${L1.backupId}, ${L2.backupId}: found bad during this restore$`),
    );
  });

  void test('fallbacks in order are exactly the next choices after each exclusion', () => {
    const extra = manifest({ tier: 'L1', at: '2026-06-01T10:00:00Z', lsn: 1150, node: 'node1' });
    const backups = [L3, extra, L1, L2];
    const p = plan({ toLsn: 1300 }, { backups });
    const excluded: string[] = [];
    const chosen: string[] = [];
    for (let round = 0; round < backups.length + 1; round++) {
      const result = planRestore({
        backups,
        segments: SEGMENTS,
        request: request({ toLsn: 1300 }),
        now: NOW,
        excluded,
      });
      if (!result.ok) break;
      chosen.push(result.plan.backup.backupId);
      excluded.push(result.plan.backup.backupId);
    }
    assert.deepEqual(chosen, inUseBackupIds(p));
    assert.deepEqual(chosen, [L1.backupId, extra.backupId, L2.backupId, L3.backupId]);
  });

  void test('no usable backup at all is refused, counting why', () => {
    const badL1 = { ...L1, bad: { at: 'x', reason: 'torn' } };
    assert.deepEqual(refusal({ node: 'node2' }, { backups: [badL1, L2, L3], excluded: [L2.backupId, L3.backupId] }), {
      field: 'database',
      message: 'no usable backup of database kimiclaw (3 in all: 1 marked bad, 2 found bad during this restore)',
    });
    assert.deepEqual(refusal({ node: 'node2' }, { backups: [L1] }), {
      field: 'database',
      message: 'no usable backup of database kimiclaw (1 in all: 1 L1 on other nodes than node2)',
    });
    assert.deepEqual(refusal({}, { backups: [] }), { field: 'database', message: 'no backup of database kimiclaw' });
    assert.deepEqual(refusal({ database: 'billing' }), { field: 'database', message: 'no backup of database billing' });
  });

  void test('overlapping segments in the archive are replayed once', () => {
    // 1201-1350 was archived again after a crash, overlapping 1201-1300 and 1301-1350.
    const segments = [...SEGMENTS, seg(1250, 1360, 1110)];
    const p = plan({}, { segments });
    assert.deepEqual(steps(p), ['1201-1300:1201-1300', '1301-1350:1301-1350', '1351-1375:1351-1375']);
    assert.equal(p.replayRows, 1750);
    const cut = plan({ toLsn: 1355 }, { segments });
    let next = 1201;
    for (const s of cut.replay) {
      assert.equal(s.fromLsn, next);
      next = s.toLsn + 1;
    }
    assert.equal(next, 1356);
  });

  void test('rows unknown in any segment leave replayRows and expectedRows out', () => {
    const segments = SEGMENTS.map((s) => (s.startLsn === 1301 ? seg(1301, 1350, 'unknown') : s));
    const p = plan({}, { segments });
    assert.equal(p.replayRows, undefined);
    assert.equal(p.expectedRows, undefined);
    assert.equal('replayRows' in p, false);
    assert.equal(plan({ toLsn: 1300 }, { segments }).replayRows, 1000);
  });

  void test('headLsn must be a non-negative integer', () => {
    assert.throws(() => plan({}, { headLsn: -5 }), /headLsn must be a non-negative integer, got -5/);
  });
});

void describe('needsRetrieval', () => {
  void test('GLACIER and DEEP_ARCHIVE need a retrieval; instant classes do not', () => {
    const at = '2026-05-01T04:00:00Z';
    for (const [storageClass, expected] of [
      ['GLACIER', true],
      ['DEEP_ARCHIVE', true],
      ['glacier', true],
      ['GLACIER_IR', false],
      ['STANDARD', false],
      ['STANDARD_IA', false],
      [undefined, false],
    ] as const) {
      assert.equal(needsRetrieval(manifest({ tier: 'L3', at, lsn: 1, storageClass })), expected, String(storageClass));
    }
  });
});

void describe('inUseBackupIds', () => {
  void test('the chosen backup first, then the fallbacks', () => {
    assert.deepEqual(inUseBackupIds(plan()), [L1.backupId, L2.backupId, L3.backupId]);
    assert.deepEqual(inUseBackupIds(plan({ backupId: L2.backupId })), [L2.backupId]);
  });
});

void describe('planRestore: everything acknowledged (a cluster proves its head)', () => {
  void test('rolls forward to the acknowledged head when the archive reaches it', () => {
    const p = plan({}, { requiredLsn: 1360 });
    assert.equal(p.targetKind, 'acknowledged');
    assert.equal(p.targetLsn, 1360);
    assert.equal(p.lost, undefined);
    assert.match(p.reason, /everything acknowledged/);
  });

  void test('refuses when the archive trails the acknowledged head, saying how many LSNs are at stake', () => {
    const r = refusal({}, { requiredLsn: 1400 });
    assert.equal(r.field, 'acceptLoss');
    assert.match(r.message, /LSN 1376 → 1400 \(25 LSNs\) were acknowledged .* archive, which ends at LSN 1375/);
  });

  void test('with acceptLoss, restores what the archive holds and names what is lost', () => {
    const p = plan({ acceptLoss: true }, { requiredLsn: 1400 });
    assert.equal(p.targetLsn, 1375);
    assert.deepEqual(p.lost, { fromLsn: 1376, toLsn: 1400 });
    assert.match(p.reason, /LSN 1376 → 1400 were acknowledged but are not archived: lost/);
  });

  void test('an explicit target is not raised to the acknowledged head', () => {
    const p = plan({ toLsn: 1250 }, { requiredLsn: 1400 });
    assert.equal(p.targetKind, 'lsn');
    assert.equal(p.targetLsn, 1250);
  });
});

void describe('planRestore: batches left out (excludeLsns)', () => {
  void test('starts from the newest backup before the first batch left out and replays around them', () => {
    const p = plan({
      excludeLsns: [
        { fromLsn: 1300, toLsn: 1300 },
        { fromLsn: 1210, toLsn: 1212 },
      ],
    });
    assert.equal(p.backup, L1);
    assert.equal(p.targetLsn, 1375);
    assert.deepEqual(p.excludedLsns, [
      { fromLsn: 1210, toLsn: 1212 },
      { fromLsn: 1300, toLsn: 1300 },
    ]);
    assert.match(p.reason, /leaving out LSN 1210-1212, 1300/);
  });

  void test('a backup holding a batch to leave out is never the start', () => {
    assert.equal(plan({ excludeLsns: [{ fromLsn: 1150, toLsn: 1160 }] }).backup, L2);
    const named = refusal({ backupId: L1.backupId, excludeLsns: [{ fromLsn: 1150, toLsn: 1160 }] });
    assert.equal(named.field, 'backupId');
    assert.match(named.message, /taken at LSN 1200, so it holds batches excludeLsns leaves out \(from LSN 1150\)/);
    const none = refusal({ excludeLsns: [{ fromLsn: 50, toLsn: 60 }] });
    assert.equal(none.field, 'excludeLsns');
    assert.match(none.message, /no usable backup was taken before LSN 50/);
  });

  void test('a range beyond the head is refused', () => {
    const r = refusal({ excludeLsns: [{ fromLsn: 1370, toLsn: 1380 }] });
    assert.equal(r.field, 'excludeLsns');
    assert.match(r.message, /1370-1380 lies beyond LSN 1375, the last LSN this restore reaches/);
  });
});
