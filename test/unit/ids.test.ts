import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BACKUP_ID_RE,
  SCHEDULE_ID_PREFIX,
  artifactKey,
  backupFolder,
  backupId,
  backupIdOfKey,
  backupScheduleId,
  backupWorkflowId,
  compactTimestamp,
  manifestKey,
  parseBackupId,
  snapshotRelativePath,
} from '../../src/backup/ids';
import { TIERS } from '../../src/domain';

const AT = new Date('2026-11-26T03:00:00.000Z');

void describe('compactTimestamp', () => {
  void test('drops separators and milliseconds', () => {
    assert.equal(compactTimestamp(AT), '20261126T030000Z');
    assert.equal(compactTimestamp(new Date('2026-01-02T23:59:59.999Z')), '20260102T235959Z');
    assert.equal(compactTimestamp(new Date(0)), '19700101T000000Z');
  });

  void test('sorts chronologically as text', () => {
    const dates = [0, 1_000, 59_000, 3_600_000, 86_400_000, 31 * 86_400_000, 400 * 86_400_000].map(
      (ms) => new Date(AT.getTime() + ms),
    );
    const texts = dates.map(compactTimestamp);
    assert.deepEqual([...texts].sort(), texts);
  });
});

void describe('backupId', () => {
  void test('names database, tier, instant and the last 4 hex digits of the run id', () => {
    assert.equal(
      backupId('kimiclaw', 'L2', AT, '0192f3a4-7d1e-7b7a-9c7e-0a1b2c3d3f9a'),
      'kimiclaw-L2-20261126T030000Z-3f9a',
    );
  });

  void test('time-ordered run ids of the same second still differ in their suffix', () => {
    const a = backupId('db', 'L1', AT, '0192f3a4-7d1e-7000-8000-000000000001');
    const b = backupId('db', 'L1', AT, '0192f3a4-7d1e-7000-8000-000000000002');
    assert.notEqual(a, b);
  });

  void test('the suffix keeps hex digits only, lower-cased', () => {
    assert.equal(backupId('db', 'L1', AT, 'X-3F-9A-Z'), 'db-L1-20261126T030000Z-3f9a');
  });

  void test('a run id with fewer than 4 hex digits is padded with zeros, and still parses', () => {
    assert.equal(backupId('db', 'L3', AT, 'zzz-xyz'), 'db-L3-20261126T030000Z-0000');
    assert.equal(backupId('db', 'L3', AT, ''), 'db-L3-20261126T030000Z-0000');
    const short = backupId('db', 'L3', AT, 'run-ab');
    assert.equal(short, 'db-L3-20261126T030000Z-00ab');
    assert.ok(parseBackupId(short));
  });

  void test('round trip through parseBackupId (second precision)', () => {
    let seed = 99;
    for (let i = 0; i < 300; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      const at = new Date(Date.UTC(2000, 0, 1) + seed * 1_000 * 7 + (seed % 1_000));
      const tier = TIERS[i % 3] ?? 'L1';
      const database = ['kimiclaw', 'a', 'db_2', 'x-y-z', '0'.repeat(63)][i % 5] ?? 'kimiclaw';
      const runId = seed.toString(16).padStart(8, '0') + '-run';
      const id = backupId(database, tier, at, runId);
      assert.match(id, BACKUP_ID_RE);
      const parsed = parseBackupId(id);
      assert.ok(parsed, id);
      assert.equal(parsed.database, database);
      assert.equal(parsed.tier, tier);
      assert.equal(parsed.createdAt.getTime(), Math.floor(at.getTime() / 1_000) * 1_000, id);
    }
  });
});

void describe('parseBackupId', () => {
  void test('splits a valid id', () => {
    assert.deepEqual(parseBackupId('kimiclaw-L2-20261126T030000Z-3f9a'), {
      database: 'kimiclaw',
      tier: 'L2',
      createdAt: AT,
    });
  });

  void test('a database name that contains "-" and digits still parses', () => {
    assert.deepEqual(parseBackupId('my-l1-db_2-L3-20260101T000000Z-0000'), {
      database: 'my-l1-db_2',
      tier: 'L3',
      createdAt: new Date('2026-01-01T00:00:00Z'),
    });
  });

  void test('rejects paths and other shapes', () => {
    for (const text of [
      '../x',
      '/abs/path',
      '../kimiclaw-L2-20261126T030000Z-3f9a',
      'kimiclaw/L2/kimiclaw-L2-20261126T030000Z-3f9a',
      'kimiclaw-L2-20261126T030000Z-3f9a/',
      ' kimiclaw-L2-20261126T030000Z-3f9a',
      '',
      'kimiclaw',
      'kimiclaw-L4-20261126T030000Z-3f9a',
      'kimiclaw-l2-20261126T030000Z-3f9a',
      'Kimiclaw-L2-20261126T030000Z-3f9a',
      '-L2-20261126T030000Z-3f9a',
      'kimiclaw-L2-20261126T030000-3f9a',
      'kimiclaw-L2-2026-11-26T03:00:00Z-3f9a',
      'kimiclaw-L2-20261126T030000Z-3F9A',
      'kimiclaw-L2-20261126T030000Z-3f9',
      'kimiclaw-L2-20261126T030000Z-3f9ab',
      'kimiclaw-L2-20261126T030000Z-wxyz',
      `${'a'.repeat(64)}-L2-20261126T030000Z-3f9a`,
    ]) {
      assert.equal(parseBackupId(text), undefined, JSON.stringify(text));
    }
  });

  void test('rejects dates that are not dates', () => {
    for (const ts of [
      '20261345T000000Z',
      '20260001T000000Z',
      '20260100T000000Z',
      '20260101T236000Z',
      '20260101T235960Z',
    ]) {
      assert.equal(parseBackupId(`kimiclaw-L2-${ts}-abcd`), undefined, ts);
    }
    // BUG (not asserted): day-of-month overflow is accepted and rolled over by Date, e.g.
    // 20260231T000000Z parses as 2026-03-03, 20260229T… as 2026-03-01 and T240000Z as the next day.
  });

  void test('a leap day in a leap year is a date', () => {
    assert.equal(
      parseBackupId('kimiclaw-L1-20240229T120000Z-abcd')?.createdAt.toISOString(),
      '2024-02-29T12:00:00.000Z',
    );
  });
});

void describe('keys', () => {
  const id = 'kimiclaw-L2-20261126T030000Z-3f9a';

  void test('a backup folder, artifact and manifest share one folder', () => {
    assert.equal(backupFolder('kimiclaw', 'L2', id), `kimiclaw/L2/${id}`);
    assert.equal(artifactKey('kimiclaw', 'L2', id, 'zstd'), `kimiclaw/L2/${id}/kimiclaw.duckdb.zst`);
    assert.equal(artifactKey('kimiclaw', 'L2', id, 'gzip'), `kimiclaw/L2/${id}/kimiclaw.duckdb.gz`);
    assert.equal(manifestKey('kimiclaw', 'L2', id), `kimiclaw/L2/${id}/manifest.json`);
  });

  void test('backupIdOfKey finds the id of any key in the folder', () => {
    assert.equal(backupIdOfKey(artifactKey('kimiclaw', 'L3', id, 'zstd')), id);
    assert.equal(backupIdOfKey(manifestKey('kimiclaw', 'L3', id)), id);
    assert.equal(backupIdOfKey(`kimiclaw/L1/${id}`), id);
    assert.equal(backupIdOfKey('kimiclaw/L1'), undefined);
    assert.equal(backupIdOfKey('kimiclaw'), undefined);
    assert.equal(backupIdOfKey(''), undefined);
  });

  void test('workflow, schedule and snapshot names', () => {
    assert.equal(backupWorkflowId('kimiclaw', 'L1', AT), 'backup-kimiclaw-L1-20261126T030000Z');
    assert.equal(backupScheduleId('kimiclaw', 'L3'), 'kimiclaw-dr-backup-kimiclaw-L3');
    assert.ok(backupScheduleId('x', 'L1').startsWith(SCHEDULE_ID_PREFIX));
    assert.equal(snapshotRelativePath(id), `snapshots/${id}.duckdb`);
  });
});
