/**
 * Fingerprint version 2 (docs/fingerprint.md) on real DuckDB files and a real node process: the
 * checksum computed here, independently, from the rows a node exports equals the one the node
 * reports and records; the SQL encodes rows byte for byte as specified; a node opening a file that
 * recorded a version-1 checksum records version 2, once; and version-1 backups still verify, by
 * their checksum while DuckDB's hash() is unchanged, by SHA-256 and the codec alone (saying so)
 * once it has changed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DuckDBBlobValue, DuckDBInstance, DuckDBTimestampValue } from '@duckdb/node-api';
import { fingerprintSidecarKey } from '../src/backup/fingerprint-sidecar';
import { verifyStoredBackup } from '../src/catalog';
import { NodeProcess } from '../src/dev/node-process';
import { V1_KNOWN_ANSWER } from '../src/duckdb/known-answer';
import { checksumSumSql, rowChecksumSql, rowEncodingSql } from '../src/duckdb/row-checksum';
import { CREATE_EVENTS_SQL } from '../src/duckdb/schema';
import { fingerprintFile, recordedFingerprintFile } from '../src/duckdb/verify';
import { EventStore } from '../src/node/store';
import { NodeClient } from '../src/node-client';
import { LocalStore } from '../src/storage/local';
import { readManifest } from '../src/storage/store';
import { AUTH, NODE_CREDENTIAL, NODE_TOKEN_ENV, logFile } from './credentials';
import { putVersion1Backup, writeVersion1File } from './version1';

/** A row as GET /events exports it (ids as bigint where a test needs the whole BIGINT range). */
interface Row {
  id: number | bigint;
  lsn: number | bigint;
  ts: string;
  kind: string;
  payload: string;
}

// The specification, written out again from docs/fingerprint.md: what another implementation does.

/** "2026-01-01T00:00:00.000001Z" → microseconds since 1970-01-01T00:00:00Z. */
function microsOf(ts: string): bigint {
  const match = /^(.+T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(ts);
  assert.ok(match, `not an ISO timestamp: ${ts}`);
  const seconds = BigInt(Date.parse(`${match[1]}Z`) / 1000);
  return seconds * 1_000_000n + BigInt((match[2] ?? '').padEnd(6, '0'));
}

function encode(row: Row): Buffer {
  const prefixed = (s: string): string => `${Buffer.byteLength(s, 'utf8')}:${s}`;
  return Buffer.from(`${row.id},${row.lsn},${microsOf(row.ts)},${prefixed(row.kind)},${prefixed(row.payload)}`, 'utf8');
}

function contribution(row: Row): bigint {
  return createHash('md5').update(encode(row)).digest().readBigUInt64BE(0);
}

function checksumOf(rows: readonly Row[]): string {
  return rows.reduce((sum, row) => sum + contribution(row), 0n).toString();
}

// ------------------------------------------------------------------------------------------

let dir: string;
const nodes: NodeProcess[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kimiclaw-fingerprint-'));
});

after(async () => {
  await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
  await rm(dir, { recursive: true, force: true });
});

async function startNode(id: string): Promise<NodeProcess> {
  const node = new NodeProcess(id, join(dir, 'nodes'));
  node.env = NODE_TOKEN_ENV;
  node.logFile = logFile(`node-${id}`);
  node.createIfMissing = true;
  await node.start();
  nodes.push(node);
  return node;
}

/** GET /stats as the node sends it, not through a client that fills in defaults. */
async function rawStats(node: NodeProcess, lsn?: number): Promise<{ checksum: string; fingerprintVersion?: number }> {
  const res = await fetch(`${node.url}/stats${lsn === undefined ? '' : `?lsn=${lsn}`}`, { headers: AUTH });
  assert.equal(res.status, 200);
  return (await res.json()) as { checksum: string; fingerprintVersion?: number };
}

async function exportedRows(client: NodeClient): Promise<Row[]> {
  const rows: Row[] = [];
  for (let after = 0, more = true; more;) {
    const page = await client.events(after, 100);
    rows.push(...page.events);
    after = page.lastLsn;
    more = page.more;
  }
  return rows;
}

/** Payloads with what could confuse an encoding: separators, quotes, multi-byte UTF-8, nesting. */
function trickyBatches(): Array<Array<{ kind: string; payload: unknown }>> {
  return [
    [{ kind: 'page_view', payload: { user: 'u1', text: 'héllo €uro 😀' } }],
    [
      { kind: 'a,b:c', payload: '1:2,3' },
      { kind: 'quote"d', payload: { s: 'line1\nline2\t"x"', n: -0.5, list: [null, true, 1e21] } },
      { kind: '日本語', payload: null },
      { kind: 'k', payload: '' },
    ],
    Array.from({ length: 300 }, (_, i) => ({
      kind: ['click', 'search', 'purchase'][i % 3]!,
      payload: { i, session: `s-${i % 7}`, words: 'ünïcödé '.repeat(i % 5), cents: i * 137 },
    })),
  ];
}

void describe('fingerprint v2 computed independently', () => {
  void test("from GET /events, the checksum computed here is the node's /stats and the one its file records", async () => {
    const node = await startNode('reference');
    const client = new NodeClient(node.id, node.url, NODE_CREDENTIAL);
    for (const batch of trickyBatches()) await client.append(batch);
    const rows = await exportedRows(client);
    assert.equal(rows.length, 305);

    const stats = await rawStats(node);
    assert.equal(stats.checksum, checksumOf(rows));
    assert.equal(stats.fingerprintVersion, 2);
    // Additive by LSN: the checksum as of LSN 2 is the sum over the rows of batches 1 and 2.
    assert.equal((await rawStats(node, 2)).checksum, checksumOf(rows.filter((r) => r.lsn <= 2)));

    await node.stop();
    const path = join(node.dataDir, 'kimiclaw.duckdb');
    const recorded = await recordedFingerprintFile(path);
    assert.equal(recorded?.fingerprintVersion, 2);
    assert.equal(recorded?.checksum, checksumOf(rows));
    assert.equal((await fingerprintFile(path)).checksum, checksumOf(rows));
  });

  void test('the SQL encodes and hashes rows byte for byte as specified', async () => {
    const rows: Row[] = [
      V1_KNOWN_ANSWER.row,
      { id: 2, lsn: 1, ts: '1969-12-31T23:59:59.5Z', kind: '', payload: '' },
      { id: 9_223_372_036_854_775_807n, lsn: 3, ts: '2026-11-26T03:00:00Z', kind: 'x', payload: '1:y' },
      { id: 4, lsn: 3, ts: '2026-11-26T03:00:00.000001Z', kind: 'x,1:y', payload: '' },
      ...Array.from({ length: 40 }, (_, i) => ({
        id: 10 + i,
        lsn: 4,
        ts: '2000-02-29T12:34:56.789012Z',
        kind: `k${i}`,
        payload: `{"n":${i}}`,
      })),
    ];
    const instance = await DuckDBInstance.create(':memory:');
    const c = await instance.connect();
    try {
      await c.run(CREATE_EVENTS_SQL);
      const appender = await c.createAppender('events');
      for (const row of rows) {
        appender.appendBigInt(BigInt(row.id));
        appender.appendBigInt(BigInt(row.lsn));
        appender.appendTimestamp(new DuckDBTimestampValue(microsOf(row.ts)));
        appender.appendVarchar(row.kind);
        appender.appendVarchar(row.payload);
        appender.endRow();
      }
      appender.closeSync();
      const reader = await c.runAndReadAll(
        `SELECT encode(${rowEncodingSql('e')}), ${rowChecksumSql(2, 'e')}::VARCHAR FROM events AS e ORDER BY e.id`,
      );
      const results = reader.getRows().map(([bytes, value]) => ({ bytes, value: String(value) }));
      const byId = [...rows].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
      byId.forEach((row, i) => {
        const got = results[i]!.bytes;
        assert.ok(got instanceof DuckDBBlobValue, 'encode() returns a BLOB');
        assert.deepEqual(Buffer.from(got.bytes), encode(row), `encoding of row ${row.id}`);
        assert.equal(results[i]!.value, contribution(row).toString(), `contribution of row ${row.id}`);
      });
      // The contribution is unsigned: a digest with the top bit set must not come out negative.
      assert.ok(rows.some((row) => contribution(row) >= 2n ** 63n));
      // Naive concatenation would make rows 3 and 4 alike; length prefixes keep them apart.
      assert.notDeepEqual(encode(rows[2]!).subarray(-12), encode(rows[3]!).subarray(-12));
      const [sum] = (await c.runAndReadAll(`SELECT ${checksumSumSql(2, 'e')}::VARCHAR FROM events AS e`)).getRows()[0]!;
      assert.equal(String(sum), checksumOf(rows));
    } finally {
      c.closeSync();
      instance.closeSync();
    }
  });

  void test('the worked example of docs/fingerprint.md', () => {
    const first = V1_KNOWN_ANSWER.row;
    const second: Row = { id: 2, lsn: 2, ts: '1969-12-31T23:59:59.500000Z', kind: 'a,b:c', payload: '"1:2,3"' };
    assert.equal(
      encode(first).toString('utf8'),
      '1,1,1767225600000001,21:kimiclaw.known-answer,26:{"text":"é€😀","n":1}',
    );
    assert.equal(encode(first).length, 75);
    assert.equal(createHash('md5').update(encode(first)).digest('hex'), '3531de9812422df84b9708143f0f74fb');
    assert.equal(contribution(first), 3_833_089_502_591_725_048n);
    assert.equal(encode(second).toString('utf8'), '2,2,-500000,5:a,b:c,7:"1:2,3"');
    assert.equal(createHash('md5').update(encode(second)).digest('hex'), '01ed1462a55997f101b63e8b72b71b67');
    assert.equal(contribution(second), 138_789_577_431_816_177n);
    assert.equal(checksumOf([first, second]), '3971879080023541225');
  });
});

void describe('a node opening a file that recorded a version-1 checksum', () => {
  void test('records the version-2 fingerprint once, in node_state with its version', async () => {
    const path = join(dir, 'v1-open', 'kimiclaw.duckdb');
    await writeVersion1File(path);
    const v1 = await recordedFingerprintFile(path);
    assert.equal(v1?.fingerprintVersion, 1);
    const v2 = await fingerprintFile(path);
    assert.equal(v2.fingerprintVersion, 2);
    assert.notEqual(v2.checksum, v1.checksum);

    const logged: Array<{ event: string; fields?: Record<string, unknown> }> = [];
    const recordings = () => logged.filter((l) => l.event === 'fingerprint_recorded');
    const store = await EventStore.open(path, (event, fields) => logged.push({ event, fields }));
    const stats = await store.stats();
    await store.close();
    assert.deepEqual(recordings(), [
      { event: 'fingerprint_recorded', fields: { fingerprintVersion: 2, previousVersion: 1, rows: 1000 } },
    ]);
    assert.equal(stats.fingerprintVersion, 2);
    assert.equal(stats.checksum, v2.checksum);
    assert.deepEqual(await recordedFingerprintFile(path), v2);

    logged.length = 0;
    const again = await EventStore.open(path, (event, fields) => logged.push({ event, fields }));
    await again.close();
    assert.deepEqual(recordings(), [], 'the second open finds version 2 recorded and computes nothing');
  });

  void test('a node process started on it reports version 2 and keeps it up to date as it appends', async () => {
    const node = new NodeProcess('upgraded', join(dir, 'nodes'));
    node.env = NODE_TOKEN_ENV;
    node.logFile = logFile('node-upgraded');
    const path = join(node.dataDir, 'kimiclaw.duckdb');
    await writeVersion1File(path, 500);
    const before = await fingerprintFile(path);
    await node.start();
    nodes.push(node);
    const client = new NodeClient(node.id, node.url, NODE_CREDENTIAL);
    const opened = await rawStats(node);
    assert.deepEqual([opened.fingerprintVersion, opened.checksum], [2, before.checksum]);
    await client.append([{ kind: 'after-upgrade', payload: { ok: true } }]);
    const rows = await exportedRows(client);
    assert.equal((await rawStats(node)).checksum, checksumOf(rows));
    await node.stop();
    assert.deepEqual(await recordedFingerprintFile(path), await fingerprintFile(path));
  });
});

void describe('version-1 backups', () => {
  const backupId = 'kimiclaw-L2-20260101T000000Z-0a1b';
  let store: LocalStore;

  before(async () => {
    store = new LocalStore(join(dir, 'backups'));
    const path = join(dir, 'v1-backup', 'kimiclaw.duckdb');
    await writeVersion1File(path);
    await putVersion1Backup(store, backupId, path);
  });

  async function manifest() {
    const m = await readManifest(store, 'kimiclaw', 'L2', backupId);
    assert.ok(m);
    return m;
  }

  async function withSidecar<T>(hash: string, fn: () => Promise<T>): Promise<T> {
    const key = fingerprintSidecarKey('kimiclaw', 'L2', backupId);
    await store.putJson(key, { format: 1, v1KnownAnswer: { ...V1_KNOWN_ANSWER, hash, duckdb: 'v1.2.2' } });
    try {
      return await fn();
    } finally {
      await store.deleteKeys([key]);
    }
  }

  void test('a manifest without fingerprintVersion is version 1 and verifies by its hash() checksum', async () => {
    const m = await manifest();
    assert.equal(m.snapshot.fingerprintVersion, 1);
    const report = await verifyStoredBackup(m, store);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.verification, { fingerprintVersion: 1, verifiedBy: 'checksum' });
    // Not a comparison that passes whatever the checksum: a wrong one is caught.
    const wrong = await verifyStoredBackup({ ...m, snapshot: { ...m.snapshot, checksum: '12345' } }, store);
    assert.equal(wrong.ok, false);
    assert.match(wrong.problems.join('\n'), /checksum \(fingerprint v1\): expected 12345, found \d+/);
  });

  void test('once hash() no longer gives the recorded known answer, it verifies by SHA-256 and the codec and says so', async () => {
    const m = await manifest();
    await withSidecar('1', async () => {
      const report = await verifyStoredBackup(m, store);
      assert.equal(report.ok, true, report.problems.join('; '));
      assert.equal(report.verification?.fingerprintVersion, 1);
      assert.equal(report.verification?.verifiedBy, 'sha256+codec');
      assert.match(
        report.verification?.checksumSkipped ?? '',
        /DuckDB v1\.5\.6 computes hash\(\) of the known-answer row as 17742062842527547720, where DuckDB v1\.2\.2 computed 1: hash\(\) has changed/,
      );
      assert.match(report.verification?.checksumSkipped ?? '', /fingerprint\.json/);

      // The checksum really is not compared (a wrong one passes), but rows, ids and LSNs are,
      // and so are the SHA-256 and the codec.
      const wrongChecksum = await verifyStoredBackup({ ...m, snapshot: { ...m.snapshot, checksum: '12345' } }, store);
      assert.equal(wrongChecksum.ok, true);
      const wrongRows = await verifyStoredBackup({ ...m, snapshot: { ...m.snapshot, rows: 999 } }, store);
      assert.deepEqual(wrongRows.problems, ['rows: expected 999, found 1,000']);
      const wrongSha = await verifyStoredBackup({ ...m, artifact: { ...m.artifact, sha256: 'f'.repeat(64) } }, store);
      assert.equal(wrongSha.ok, false);
      assert.match(wrongSha.problems.join('\n'), /SHA-256 mismatch/);
    });
  });

  void test('a version-2 manifest is compared in version 2, never against a version-1 checksum', async () => {
    const m = await manifest();
    const v1 = await verifyStoredBackup({ ...m, snapshot: { ...m.snapshot, fingerprintVersion: 2 } }, store);
    assert.equal(v1.ok, false);
    assert.deepEqual(v1.verification, { fingerprintVersion: 2, verifiedBy: 'checksum' });
    assert.match(v1.problems.join('\n'), /checksum \(fingerprint v2\): expected \d+, found \d+/);
  });
});
