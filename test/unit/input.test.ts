import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BackupInputSchema, parseInput } from '../../src/backup/input';

function problems(input: unknown): string[] {
  const result = parseInput(BackupInputSchema, input);
  assert.equal(result.ok, false, `expected ${JSON.stringify(input)} to be refused`);
  return result.ok ? [] : result.problems;
}

function value(input: unknown) {
  const result = parseInput(BackupInputSchema, input);
  assert.ok(result.ok, result.ok ? '' : result.problems.join('; '));
  return result.value;
}

void describe('BackupInputSchema via parseInput', () => {
  void test('accepts each tier; database defaults to "kimiclaw"', () => {
    for (const tier of ['L1', 'L2', 'L3'] as const) {
      assert.deepEqual(value({ tier }), { database: 'kimiclaw', tier });
    }
  });

  void test('keeps the optional fields', () => {
    assert.deepEqual(value({ database: 'events_2', tier: 'L3', reason: 'before migration', node: 'node-b' }), {
      database: 'events_2',
      tier: 'L3',
      reason: 'before migration',
      node: 'node-b',
    });
  });

  void test('an unknown tier names the value and the accepted values', () => {
    assert.deepEqual(problems({ tier: 'L4' }), ['tier: "L4" is not accepted; accepted values: "L1", "L2", "L3"']);
    assert.deepEqual(problems({ tier: 'l1' }), ['tier: "l1" is not accepted; accepted values: "L1", "L2", "L3"']);
    assert.deepEqual(problems({ tier: 2 }), ['tier: 2 is not accepted; accepted values: "L1", "L2", "L3"']);
  });

  void test('a missing tier is refused, naming the field', () => {
    for (const input of [{}, undefined, null, { database: 'kimiclaw' }]) {
      const found = problems(input);
      assert.equal(found.length, 1, JSON.stringify(found));
      assert.match(found[0] ?? '', /^tier: /);
    }
    // BUG (not asserted): the message is `tier: undefined is not accepted; accepted values: …`
    // instead of `tier: is required (…)`; zod 4 reports a missing enum as invalid_value, which
    // describeInputIssues handles before its "is required" branch.
  });

  void test('unknown fields are refused by name', () => {
    assert.deepEqual(problems({ tier: 'L1', foo: 1 }), ['(input): unknown field(s) "foo"']);
    assert.deepEqual(problems({ tier: 'L1', foo: 1, bar: 2 }), ['(input): unknown field(s) "foo", "bar"']);
  });

  void test('a bad database name is refused with the value', () => {
    assert.deepEqual(problems({ tier: 'L1', database: 'Bad Name' }), [
      'database: must be 1-63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit (got "Bad Name")',
    ]);
    assert.equal(problems({ tier: 'L1', database: '../etc' }).length, 1);
    assert.equal(problems({ tier: 'L1', database: '' }).length, 1);
    assert.equal(problems({ tier: 'L1', database: 'a'.repeat(64) }).length, 1);
    assert.equal(value({ tier: 'L1', database: 'a'.repeat(63) }).database, 'a'.repeat(63));
  });

  void test('a wrongly typed field names its type and the value', () => {
    assert.deepEqual(problems({ tier: 'L1', database: 42 }), [
      'database: Invalid input: expected string, received number (got 42)',
    ]);
  });

  void test('a reason longer than 500 characters is refused', () => {
    assert.equal(value({ tier: 'L1', reason: 'x'.repeat(500) }).reason?.length, 500);
    const found = problems({ tier: 'L1', reason: 'x'.repeat(501) });
    assert.equal(found.length, 1);
    assert.match(found[0] ?? '', /^reason: /);
  });

  void test('every problem is listed at once', () => {
    const found = problems({ tier: 'L9', database: 'BAD', node: 'Nope!' });
    assert.equal(found.length, 3, found.join('\n'));
    assert.deepEqual(found.map((p) => p.split(':')[0]).sort(), ['database', 'node', 'tier']);
  });

  void test('input that is not an object is refused', () => {
    assert.equal(problems('L1').length, 1);
    assert.equal(problems(['L1']).length, 1);
  });
});
