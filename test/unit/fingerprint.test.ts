import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeVerification } from '../../src/backup/content-check';
import { parseFingerprintSidecar } from '../../src/backup/fingerprint-sidecar';
import { parseFingerprintRow, shapeDifferences } from '../../src/duckdb/fingerprint';
import { KnownAnswerSchema, V1_KNOWN_ANSWER, compareKnownAnswer } from '../../src/duckdb/known-answer';
import { parseFingerprintVersion } from '../../src/duckdb/row-checksum';

const LOCATION = 's3://bucket/kimiclaw/L3/kimiclaw-L3-20260101T000000Z-0a1b/fingerprint.json';

void describe('parseFingerprintVersion', () => {
  void test('a checksum recorded without a version is version 1', () => {
    assert.equal(parseFingerprintVersion(null), 1);
    assert.equal(parseFingerprintVersion(undefined), 1);
  });

  void test('known versions are read as numbers', () => {
    assert.equal(parseFingerprintVersion('1'), 1);
    assert.equal(parseFingerprintVersion('2'), 2);
    assert.equal(parseFingerprintVersion(' 2\n'), 2);
  });

  void test('an unknown version is refused, naming the ones this code knows', () => {
    for (const text of ['3', '', '2.0', 'v2']) {
      assert.throws(
        () => parseFingerprintVersion(text),
        (err: Error) =>
          err instanceof RangeError && err.message.includes('(1, 2)') && err.message.includes(`"${text}"`),
        text,
      );
    }
  });
});

void describe('parseFingerprintRow', () => {
  const row = { rows: '3', min_id: '1', max_id: '3', max_lsn: '2', checksum: '18446744073709551615' };

  void test('the version comes with the row; none recorded is version 1', () => {
    assert.deepEqual(parseFingerprintRow({ ...row, fingerprint_version: '2' }), {
      rows: 3,
      minId: 1,
      maxId: 3,
      maxLsn: 2,
      checksum: '18446744073709551615',
      fingerprintVersion: 2,
    });
    assert.equal(parseFingerprintRow({ ...row, fingerprint_version: null }).fingerprintVersion, 1);
  });

  void test('an empty table has null ids and LSN and checksum 0', () => {
    const empty = { rows: '0', min_id: null, max_id: null, max_lsn: null, checksum: '0', fingerprint_version: '2' };
    assert.deepEqual(parseFingerprintRow(empty), {
      rows: 0,
      minId: null,
      maxId: null,
      maxLsn: null,
      checksum: '0',
      fingerprintVersion: 2,
    });
  });

  void test('anything that is not a fingerprint is refused', () => {
    assert.throws(() => parseFingerprintRow({ ...row, checksum: '12ab' }), /checksum is not a decimal number/);
    assert.throws(() => parseFingerprintRow({ ...row, checksum: null }), /checksum is not a decimal number/);
    assert.throws(() => parseFingerprintRow({ ...row, rows: 3 }), /column rows is not text/);
    assert.throws(() => parseFingerprintRow({ ...row, max_id: '9007199254740993' }), /not a safe integer/);
    assert.throws(() => parseFingerprintRow({ ...row, fingerprint_version: '7' }), /"7" is not one/);
  });
});

void describe('shapeDifferences', () => {
  void test('compares rows, ids and LSNs, never a checksum', () => {
    const shape = { rows: 10, minId: 1, maxId: 10, maxLsn: 4 };
    assert.deepEqual(shapeDifferences(shape, { ...shape }), []);
    assert.deepEqual(shapeDifferences(shape, { ...shape, rows: 9, maxLsn: null }), [
      'rows: expected 10, found 9',
      'maxLsn: expected 4, found null',
    ]);
  });
});

void describe('compareKnownAnswer', () => {
  void test('the same hash: version-1 checksums can be recomputed', () => {
    assert.deepEqual(compareKnownAnswer(V1_KNOWN_ANSWER, { hash: V1_KNOWN_ANSWER.hash, duckdb: 'v1.6.0' }), {
      same: true,
    });
  });

  void test('another hash: the reason names both DuckDB versions and both values', () => {
    assert.deepEqual(compareKnownAnswer(V1_KNOWN_ANSWER, { hash: '99', duckdb: 'v2.0.0' }), {
      same: false,
      reason:
        'DuckDB v2.0.0 computes hash() of the known-answer row as 99, where DuckDB v1.5.6 computed ' +
        '17742062842527547720: hash() has changed, so a version-1 checksum cannot be recomputed',
    });
  });

  void test('the built-in known answer is a valid one', () => {
    assert.deepEqual(KnownAnswerSchema.parse(V1_KNOWN_ANSWER), V1_KNOWN_ANSWER);
  });
});

void describe('parseFingerprintSidecar', () => {
  void test('reads the known answer a version-1 backup was made under', () => {
    const sidecar = { format: 1, v1KnownAnswer: { ...V1_KNOWN_ANSWER, duckdb: 'v1.4.0' } };
    assert.deepEqual(parseFingerprintSidecar(JSON.stringify(sidecar), LOCATION), sidecar);
  });

  void test('refuses what is not a sidecar, naming where it is and what is wrong', () => {
    assert.throws(() => parseFingerprintSidecar('{', LOCATION), new RegExp(`sidecar ${LOCATION} is not JSON`));
    const badHash = { format: 1, v1KnownAnswer: { ...V1_KNOWN_ANSWER, hash: '-1' } };
    assert.throws(
      () => parseFingerprintSidecar(JSON.stringify(badHash), LOCATION),
      /fingerprint\.json is malformed: v1KnownAnswer\.hash: /,
    );
    assert.throws(
      () => parseFingerprintSidecar(JSON.stringify({ format: 2, v1KnownAnswer: V1_KNOWN_ANSWER }), LOCATION),
      /malformed: format: /,
    );
  });
});

void describe('describeVerification', () => {
  void test('says which version was compared and how', () => {
    assert.equal(
      describeVerification({ fingerprintVersion: 2, verifiedBy: 'checksum' }, 'zstd'),
      'fingerprint v2, checksum recomputed over every row',
    );
    assert.equal(
      describeVerification({ fingerprintVersion: 1, verifiedBy: 'recorded-checksum' }, 'gzip'),
      'fingerprint v1, checksum as the file recorded it',
    );
  });

  void test('a skipped checksum is said loudly, with the reason and what verified instead', () => {
    assert.equal(
      describeVerification(
        { fingerprintVersion: 1, verifiedBy: 'sha256+codec', checksumSkipped: 'hash() has changed' },
        'zstd',
      ),
      "fingerprint v1 checksum NOT compared: hash() has changed; verified by SHA-256, zstd's XXH64 and rows, ids and LSNs alone",
    );
    assert.match(
      describeVerification({ fingerprintVersion: 1, verifiedBy: 'sha256+codec', checksumSkipped: 'changed' }),
      /verified by SHA-256, the codec's checksum and rows, ids and LSNs alone$/,
    );
  });
});
