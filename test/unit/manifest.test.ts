import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MANIFEST_FORMAT, parseManifest, type Fingerprint, type Manifest } from '../../src/backup/manifest';
import { fingerprintDifferences } from '../../src/duckdb/fingerprint';

const KEY = 'kimiclaw/L2/kimiclaw-L2-20261126T030000Z-3f9a/manifest.json';

function validManifest(): Manifest {
  return {
    format: MANIFEST_FORMAT,
    backupId: 'kimiclaw-L2-20261126T030000Z-3f9a',
    database: 'kimiclaw',
    tier: 'L2',
    node: 'n1',
    createdAt: '2026-11-26T03:00:00.000Z',
    completedAt: '2026-11-26T03:01:10.000Z',
    workflowId: 'backup-kimiclaw-L2-20261126T030000Z',
    runId: '0192f3a4-7d1e-7b7a-9c7e-0a1b2c3d3f9a',
    snapshot: {
      rows: 1_000,
      minId: 1,
      maxId: 1_000,
      maxLsn: 2_000,
      checksum: 'abc',
      fingerprintVersion: 2,
      lsn: 2_000,
      bytes: 4_096,
      stallMs: 12.5,
    },
    artifact: {
      key: 'kimiclaw/L2/kimiclaw-L2-20261126T030000Z-3f9a/kimiclaw.duckdb.zst',
      compression: 'zstd',
      level: 3,
      bytes: 1_024,
      sha256: 'a'.repeat(64),
      storageClass: 'STANDARD',
    },
    verifiedAt: '2026-11-26T03:01:00.000Z',
  };
}

function errorOf(text: string): string {
  try {
    parseManifest(text, KEY);
  } catch (err) {
    assert.ok(err instanceof Error);
    return err.message;
  }
  assert.fail('expected parseManifest to throw');
}

void describe('parseManifest', () => {
  void test('parses a valid manifest', () => {
    const m = validManifest();
    assert.deepEqual(parseManifest(JSON.stringify(m), KEY), m);
  });

  void test('a manifest written before fingerprint versions (none recorded) is version 1', () => {
    const m = validManifest();
    const { fingerprintVersion: _, ...snapshot } = m.snapshot;
    const parsed = parseManifest(JSON.stringify({ ...m, snapshot }), KEY);
    assert.equal(parsed.snapshot.fingerprintVersion, 1);
    assert.deepEqual(parsed, { ...m, snapshot: { ...m.snapshot, fingerprintVersion: 1 } });
  });

  void test('a fingerprint version this code does not know is refused, not compared', () => {
    const m = validManifest();
    const message = errorOf(JSON.stringify({ ...m, snapshot: { ...m.snapshot, fingerprintVersion: 3 } }));
    assert.match(message, /snapshot\.fingerprintVersion: /);
  });

  void test('keeps the optional bad marker and retainUntil', () => {
    const m = validManifest();
    m.bad = { at: '2026-11-27T00:00:00.000Z', reason: 'sha256 mismatch' };
    m.artifact.retainUntil = '2033-11-26T03:00:00.000Z';
    assert.deepEqual(parseManifest(JSON.stringify(m), KEY), m);
  });

  void test('text that is not JSON names the key', () => {
    const message = errorOf('{"format": 1,');
    assert.ok(message.startsWith(`manifest ${KEY} is not JSON: `), message);
  });

  void test('a malformed manifest names the key and each bad field', () => {
    const m = validManifest() as unknown as Record<string, Record<string, unknown>>;
    (m as Record<string, unknown>).tier = 'L4';
    (m.artifact as Record<string, unknown>).sha256 = 'not-a-hash';
    (m.snapshot as Record<string, unknown>).rows = -1;
    delete (m as Record<string, unknown>).verifiedAt;
    const message = errorOf(JSON.stringify(m));
    assert.ok(message.startsWith(`manifest ${KEY} is malformed: `), message);
    for (const field of ['tier: ', 'snapshot.rows: ', 'artifact.sha256: ', 'verifiedAt: ']) {
      assert.ok(message.includes(field), `${field} missing from: ${message}`);
    }
    assert.equal(message.split('; ').length, 4, message);
  });

  void test('a different format version is refused', () => {
    const message = errorOf(JSON.stringify({ ...validManifest(), format: 2 }));
    assert.match(message, /is malformed: format: /);
  });

  void test('JSON that is not an object is malformed at the root', () => {
    assert.match(errorOf('[]'), new RegExp(`^manifest ${KEY} is malformed: \\(root\\): `));
    assert.match(errorOf('null'), /is malformed: \(root\): /);
  });

  void test('an unknown compression is refused', () => {
    const m = validManifest();
    const message = errorOf(JSON.stringify({ ...m, artifact: { ...m.artifact, compression: 'lz4' } }));
    assert.match(message, /artifact\.compression: /);
  });
});

void describe('fingerprintDifferences', () => {
  const base: Fingerprint = {
    rows: 1_234_567,
    minId: 1,
    maxId: 1_234_567,
    maxLsn: 99,
    checksum: 'abc',
    fingerprintVersion: 2,
  };

  void test('equal fingerprints have no differences', () => {
    assert.deepEqual(fingerprintDifferences(base, { ...base }), []);
    const empty: Fingerprint = { rows: 0, minId: null, maxId: null, maxLsn: null, checksum: '', fingerprintVersion: 2 };
    assert.deepEqual(fingerprintDifferences(empty, { ...empty }), []);
  });

  void test('each differing field is described, numbers with thousands separators', () => {
    assert.deepEqual(fingerprintDifferences(base, { ...base, rows: 1_234_000, checksum: 'def' }), [
      'rows: expected 1,234,567, found 1,234,000',
      'checksum (fingerprint v2): expected abc, found def',
    ]);
  });

  void test('checksums of different versions are never compared; the message names both', () => {
    assert.deepEqual(fingerprintDifferences(base, { ...base, checksum: 'def', fingerprintVersion: 1 }), [
      'fingerprintVersion: expected 2, found 1 (checksums of different versions cannot be compared)',
    ]);
    assert.deepEqual(
      fingerprintDifferences({ ...base, fingerprintVersion: 1 }, { ...base, fingerprintVersion: 1 }),
      [],
    );
  });

  void test('null values are written as null, in field order', () => {
    assert.deepEqual(fingerprintDifferences(base, { ...base, minId: null, maxId: null, maxLsn: 100 }), [
      'minId: expected 1, found null',
      'maxId: expected 1,234,567, found null',
      'maxLsn: expected 99, found 100',
    ]);
  });
});
