import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseInput } from '../../src/backup/input';
import { RestoreInputSchema } from '../../src/restore/input';

const ID = 'kimiclaw-L2-20260531T030000Z-3f9a';
const BACKUP_ID_HINT = 'must be "latest" or a backup id such as "kimiclaw-L2-20261126T030000Z-3f9a"';

function problems(input: unknown): string[] {
  const result = parseInput(RestoreInputSchema, input);
  assert.equal(result.ok, false, `expected ${JSON.stringify(input)} to be refused`);
  return result.ok ? [] : result.problems;
}

function value(input: unknown) {
  const result = parseInput(RestoreInputSchema, input);
  assert.ok(result.ok, result.ok ? '' : result.problems.join('; '));
  return result.value;
}

void describe('RestoreInputSchema via parseInput', () => {
  void test('everything is optional: database "kimiclaw", target "in-place"', () => {
    for (const input of [{}, undefined, null]) {
      assert.deepEqual(value(input), { database: 'kimiclaw', target: 'in-place' });
    }
  });

  void test('keeps every field', () => {
    assert.deepEqual(
      value({
        database: 'kimiclaw',
        backupId: ID,
        toLsn: 1375,
        target: 'scratch',
        node: 'node1',
        scratchDir: '/var/tmp/kimiclaw-restore',
      }),
      {
        database: 'kimiclaw',
        backupId: ID,
        toLsn: 1375,
        target: 'scratch',
        node: 'node1',
        scratchDir: '/var/tmp/kimiclaw-restore',
      },
    );
    assert.equal(value({ backupId: 'latest' }).backupId, 'latest');
    assert.equal(value({ toLsn: 0 }).toLsn, 0);
    assert.equal(value({ target: 'scratch' }).target, 'scratch');
  });

  void test('pointInTime is normalised to UTC with microseconds', () => {
    assert.equal(value({ pointInTime: '2026-06-01T12:00:00+02:00' }).pointInTime, '2026-06-01T10:00:00.000000Z');
    assert.equal(value({ pointInTime: '2026-06-01T10:00:00.123456Z' }).pointInTime, '2026-06-01T10:00:00.123456Z');
  });

  void test('pointInTime that does not parse is refused with an example', () => {
    const hint =
      'pointInTime: must be an ISO-8601 date and time with a timezone, e.g. "2026-06-01T10:00:00Z" or "2026-06-01T12:00:00.250+02:00"';
    assert.deepEqual(problems({ pointInTime: 'yesterday' }), [`${hint} (got "yesterday")`]);
    assert.deepEqual(problems({ pointInTime: '2026-06-01T10:00:00' }), [`${hint} (got "2026-06-01T10:00:00")`]);
    assert.deepEqual(problems({ pointInTime: '2026-02-30T10:00:00Z' }), [`${hint} (got "2026-02-30T10:00:00Z")`]);
    assert.deepEqual(problems({ pointInTime: 1780308000000 }), [
      'pointInTime: Invalid input: expected string, received number (got 1780308000000)',
    ]);
  });

  void test('pointInTime and toLsn together are refused', () => {
    assert.deepEqual(problems({ pointInTime: '2026-06-01T10:00:00Z', toLsn: 1375 }), [
      'toLsn: give pointInTime or toLsn, not both (got 1375)',
    ]);
  });

  void test('toLsn must be a non-negative integer', () => {
    assert.deepEqual(problems({ toLsn: -1 }), ['toLsn: Too small: expected number to be >=0 (got -1)']);
    assert.equal(problems({ toLsn: 1.5 }).length, 1);
    assert.match(problems({ toLsn: 1.5 })[0] ?? '', /^toLsn: .*\(got 1\.5\)$/);
    assert.match(problems({ toLsn: '1375' })[0] ?? '', /^toLsn: .*expected number.*\(got "1375"\)$/);
    assert.match(problems({ toLsn: 2 ** 60 })[0] ?? '', /^toLsn: /);
  });

  void test('backupId: "latest" or a backup id of this database', () => {
    assert.equal(value({ backupId: ID }).backupId, ID);
    assert.equal(value({ database: 'events_2', backupId: 'events_2-L1-20260601T110000Z-00ab' }).database, 'events_2');
  });

  void test('backupId: path escapes and other junk are refused', () => {
    for (const bad of [
      '../etc',
      '../../etc/passwd',
      '/abs',
      '/kimiclaw-L2-20260531T030000Z-3f9a',
      `${ID}/../x`,
      `${ID}/`,
      `kimiclaw/L2/${ID}`,
      `${ID}\0`,
      '',
      'Latest',
      'newest',
      'kimiclaw-L4-20260531T030000Z-3f9a',
      'kimiclaw-L2-20260230T030000Z-3f9a', // 30 February
      'kimiclaw-L2-20260531T030000Z-3F9A',
      'kimiclaw-L2-20260531T030000Z',
    ]) {
      assert.deepEqual(problems({ backupId: bad }), [`backupId: ${BACKUP_ID_HINT} (got ${JSON.stringify(bad)})`], bad);
    }
  });

  void test("backupId: another database's backup is refused, naming both databases", () => {
    assert.deepEqual(problems({ backupId: 'billing-L2-20260531T030000Z-3f9a' }), [
      'backupId: belongs to database "billing", not "kimiclaw"; set database or pick a backup of "kimiclaw" (got "billing-L2-20260531T030000Z-3f9a")',
    ]);
    assert.deepEqual(problems({ database: 'billing', backupId: ID }), [
      `backupId: belongs to database "kimiclaw", not "billing"; set database or pick a backup of "billing" (got "${ID}")`,
    ]);
    // A database whose name extends another's is still another database.
    assert.equal(problems({ database: 'kimiclaw-2', backupId: ID }).length, 1);
    assert.equal(problems({ backupId: 'kimiclaw-2-L2-20260531T030000Z-3f9a' }).length, 1);
  });

  void test('target accepts "in-place" and "scratch" only', () => {
    assert.deepEqual(problems({ target: 'elsewhere' }), [
      'target: "elsewhere" is not accepted; accepted values: "in-place", "scratch"',
    ]);
  });

  void test('scratchDir: an absolute, normalised path, only with target "scratch"', () => {
    assert.equal(value({ target: 'scratch', scratchDir: '/srv/restore/a.b' }).scratchDir, '/srv/restore/a.b');
    assert.deepEqual(problems({ scratchDir: '/srv/restore' }), [
      'scratchDir: is only used with target "scratch"; set target to "scratch" or leave scratchDir out (got "/srv/restore")',
    ]);
    assert.equal(problems({ target: 'in-place', scratchDir: '/srv/restore' }).length, 1);
    const hint = 'scratchDir: must be an absolute path without "." or ".." segments, e.g. "/var/tmp/kimiclaw-restore"';
    for (const bad of ['restore', './restore', '/srv/../etc', '/srv/./x', '/srv/..', '', '/a\0b']) {
      assert.deepEqual(problems({ target: 'scratch', scratchDir: bad }), [`${hint} (got ${JSON.stringify(bad)})`], bad);
    }
  });

  void test('node and database must be plain names', () => {
    assert.match(problems({ node: '../node1' })[0] ?? '', /^node: must be 1-63 characters/);
    assert.match(problems({ database: '/abs' })[0] ?? '', /^database: must be 1-63 characters/);
  });

  void test('unknown fields are refused by name', () => {
    assert.deepEqual(problems({ toLsn: 5, tier: 'L2' }), ['(input): unknown field(s) "tier"']);
    assert.deepEqual(problems({ point_in_time: '2026-06-01T10:00:00Z' }), [
      '(input): unknown field(s) "point_in_time"',
    ]);
  });

  void test('every problem is listed at once', () => {
    const found = problems({
      backupId: '../x',
      pointInTime: 'soon',
      toLsn: 3,
      target: 'nowhere',
      node: 'Bad!',
      extra: true,
    });
    assert.deepEqual(found.map((p) => p.split(':')[0]).sort(), [
      '(input)',
      'backupId',
      'node',
      'pointInTime',
      'target',
      'toLsn',
    ]);
  });

  void test('input that is not an object is refused', () => {
    assert.equal(problems('latest').length, 1);
    assert.equal(problems([ID]).length, 1);
    assert.equal(problems(42).length, 1);
  });
});

void describe('RestoreInputSchema: acceptLoss and excludeLsns', () => {
  void test('ranges to leave out are kept as given; acceptLoss in place', () => {
    const v = value({
      excludeLsns: [
        { fromLsn: 5, toLsn: 9 },
        { fromLsn: 12, toLsn: 12 },
      ],
      acceptLoss: true,
    });
    assert.deepEqual(v.excludeLsns, [
      { fromLsn: 5, toLsn: 9 },
      { fromLsn: 12, toLsn: 12 },
    ]);
    assert.equal(v.acceptLoss, true);
  });

  void test('empty, overlapping and out-of-range ranges are refused, naming excludeLsns', () => {
    assert.match(
      problems({ excludeLsns: [{ fromLsn: 9, toLsn: 5 }] }).join(),
      /excludeLsns\.0: is empty: fromLsn must be at most toLsn/,
    );
    assert.match(problems({ excludeLsns: [] }).join(), /excludeLsns: list at least one range/);
    assert.match(
      problems({
        excludeLsns: [
          { fromLsn: 5, toLsn: 9 },
          { fromLsn: 9, toLsn: 12 },
        ],
      }).join(),
      /excludeLsns: ranges 5-9 and 9-12 overlap; merge them into one/,
    );
    assert.match(
      problems({ toLsn: 10, excludeLsns: [{ fromLsn: 8, toLsn: 11 }] }).join(),
      /excludeLsns: reaches past toLsn 10/,
    );
    assert.match(problems({ excludeLsns: [{ fromLsn: 0, toLsn: 2 }] }).join(), /excludeLsns\.0\.fromLsn/);
  });

  void test('acceptLoss on a scratch restore is refused: it means nothing there', () => {
    assert.match(
      problems({ target: 'scratch', acceptLoss: true }).join(),
      /acceptLoss: means nothing for a scratch restore/,
    );
  });
});
