import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  InvalidPrimaryRecord,
  PRIMARY_KEY,
  casPrimary,
  parsePrimaryRecord,
  readPrimary,
  type CasResult,
  type ConfigCenter,
  type PrimaryRecord,
  type Versioned,
} from '../../src/config-center';

const GOOD: PrimaryRecord = {
  node: 'node-b',
  url: 'http://10.0.0.2:7070',
  epoch: 4,
  since: '2025-03-01T12:00:00.000Z',
  failover: 'failover-7f3a',
};

function rejectsField(value: unknown, field: string, detail?: RegExp): void {
  assert.throws(
    () => parsePrimaryRecord(value),
    (err: unknown) => {
      assert.ok(err instanceof InvalidPrimaryRecord, `expected InvalidPrimaryRecord, got ${String(err)}`);
      assert.equal(err.field, field);
      assert.ok(err.message.includes(`"${field}"`), `message names the field: ${err.message}`);
      if (detail) assert.match(err.message, detail);
      return true;
    },
    JSON.stringify(value),
  );
}

void describe('parsePrimaryRecord', () => {
  void test('accepts a full record and one without failover', () => {
    assert.deepEqual(parsePrimaryRecord(GOOD), GOOD);
    const { failover: _failover, ...withoutFailover } = GOOD;
    assert.deepEqual(parsePrimaryRecord(withoutFailover), withoutFailover);
  });

  void test('drops an undefined failover, so the result equals its own JSON round trip', () => {
    const parsed = parsePrimaryRecord({ ...GOOD, failover: undefined });
    assert.equal('failover' in parsed, false);
    assert.deepEqual(JSON.parse(JSON.stringify(parsed)), parsed);
  });

  void test('accepts since with an offset and without fractions', () => {
    for (const since of ['2025-03-01T12:00:00Z', '2025-03-01T14:00:00+02:00', '2025-03-01T12:00Z']) {
      assert.equal(parsePrimaryRecord({ ...GOOD, since }).since, since);
    }
  });

  void test('a value that is not an object is refused as a whole', () => {
    for (const value of [null, undefined, 'node-b', 4, [GOOD]]) rejectsField(value, '(record)', /JSON object/);
  });

  void test('node must be a non-empty string', () => {
    for (const node of [undefined, '', '  ', 7, null]) rejectsField({ ...GOOD, node }, 'node', /non-empty string/);
  });

  void test('url must be an http(s) URL', () => {
    for (const url of [undefined, '', 'node-b:7070', 'ftp://10.0.0.2/', 42]) {
      rejectsField({ ...GOOD, url }, 'url', /http\(s\) URL/);
    }
  });

  void test('epoch must be a non-negative safe integer', () => {
    for (const epoch of [undefined, '4', -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, null]) {
      rejectsField({ ...GOOD, epoch }, 'epoch', /non-negative integer/);
    }
    assert.equal(parsePrimaryRecord({ ...GOOD, epoch: 0 }).epoch, 0);
  });

  void test('since must be an ISO 8601 timestamp', () => {
    for (const since of [undefined, '', 'yesterday', '2025-03-01', '2025-13-45T12:00:00Z', 1740830400000]) {
      rejectsField({ ...GOOD, since }, 'since', /ISO 8601/);
    }
  });

  void test('failover, when present, must be a non-empty string', () => {
    for (const failover of ['', 12, null]) rejectsField({ ...GOOD, failover }, 'failover', /non-empty string/);
  });

  void test('an unknown (e.g. misspelt) field is refused by name', () => {
    const { epoch, ...rest } = GOOD;
    rejectsField({ ...rest, epoc: epoch }, 'epoc', /unknown field/);
  });

  void test('the message shows the bad value', () => {
    assert.throws(() => parsePrimaryRecord({ ...GOOD, epoch: '4' }), /got string "4"/);
  });
});

/** An in-memory config center; `beforeSwap` runs between a caller's read and its swap. */
class MemoryCenter implements ConfigCenter {
  readonly describe = 'memory';
  private entries = new Map<string, { value: unknown; revision: number }>();
  private counter = 0;
  beforeSwap?: () => void;
  swaps = 0;

  async get(key: string): Promise<Versioned<unknown>> {
    const entry = this.entries.get(key);
    return entry
      ? { value: structuredClone(entry.value), revision: String(entry.revision) }
      : { value: undefined, revision: '0' };
  }

  async compareAndSwap(key: string, expectedRevision: string, value: unknown): Promise<CasResult> {
    this.swaps++;
    const hook = this.beforeSwap;
    this.beforeSwap = undefined;
    hook?.();
    const current = await this.get(key);
    if (current.revision !== expectedRevision) return { ok: false, current };
    this.set(key, value);
    return { ok: true, revision: String(this.counter) };
  }

  set(key: string, value: unknown): void {
    this.entries.set(key, { value: structuredClone(value), revision: ++this.counter });
  }

  watch(): () => void {
    throw new Error('not used');
  }

  async close(): Promise<void> {}
}

const record = (epoch: number, node = `node-${epoch}`): PrimaryRecord => ({
  node,
  url: `http://${node}:7070`,
  epoch,
  since: '2025-03-01T12:00:00.000Z',
});

void describe('casPrimary over an in-memory center', () => {
  void test('creates the first record only when no epoch is expected', async () => {
    const center = new MemoryCenter();
    const refused = await casPrimary(center, 1, record(2));
    assert.equal(refused.ok, false);
    assert.match(!refused.ok ? refused.reason : '', /no primary is recorded, but epoch 1 was expected/);
    assert.deepEqual(await casPrimary(center, undefined, record(1)), { ok: true });
    assert.deepEqual((await readPrimary(center)).record, record(1));
  });

  void test('refuses a stale expected epoch, and an epoch that does not grow', async () => {
    const center = new MemoryCenter();
    center.set(PRIMARY_KEY, record(3));
    const cases: [number | undefined, PrimaryRecord, RegExp][] = [
      [undefined, record(4), /already recorded \(node node-3 at epoch 3\), but none was expected/],
      [2, record(4), /recorded primary is node node-3 at epoch 3, not epoch 2/],
      [3, record(3, 'node-x'), /new epoch 3 must be greater than the recorded epoch 3/],
      [3, record(1, 'node-x'), /new epoch 1 must be greater/],
    ];
    for (const [expected, next, reason] of cases) {
      const result = await casPrimary(center, expected, next);
      assert.equal(result.ok, false, `${expected} -> ${next.epoch}`);
      if (!result.ok) {
        assert.match(result.reason, reason);
        assert.deepEqual(result.current, record(3));
      }
    }
    assert.equal(center.swaps, 0, 'refusals never write');
  });

  void test('a retry of a write that already happened succeeds without writing again', async () => {
    const center = new MemoryCenter();
    center.set(PRIMARY_KEY, record(3));
    assert.deepEqual(await casPrimary(center, 3, record(4)), { ok: true });
    assert.equal(center.swaps, 1);
    assert.deepEqual(await casPrimary(center, 3, record(4)), { ok: true });
    assert.equal(center.swaps, 1);
    // The same epoch with other content is not a retry.
    const other = await casPrimary(center, 3, { ...record(4), failover: 'another-workflow' });
    assert.equal(other.ok, false);
  });

  void test('after losing a revision race it judges again against the winner', async () => {
    const center = new MemoryCenter();
    center.set(PRIMARY_KEY, record(3));
    // Someone rewrites the same record (new revision, same epoch) while we are between read and swap.
    center.beforeSwap = () => center.set(PRIMARY_KEY, record(3));
    assert.deepEqual(await casPrimary(center, 3, record(4)), { ok: true });
    assert.equal(center.swaps, 2, 'lost once on the revision, then swapped');

    // A winner with a newer epoch makes us give up with the winner as current.
    center.beforeSwap = () => center.set(PRIMARY_KEY, record(5, 'node-winner'));
    const lost = await casPrimary(center, 4, record(5));
    assert.equal(lost.ok, false);
    if (!lost.ok) assert.deepEqual(lost.current, record(5, 'node-winner'));
  });

  void test('refuses an invalid proposal before touching the center', async () => {
    const center = new MemoryCenter();
    await assert.rejects(casPrimary(center, undefined, { ...record(1), epoch: -1 }), InvalidPrimaryRecord);
    assert.equal(center.swaps, 0);
  });

  void test('another key keeps a separate primary (one per cluster)', async () => {
    const center = new MemoryCenter();
    const key = '/services/orders/primary';
    assert.deepEqual(await casPrimary(center, undefined, record(1), key), { ok: true });
    assert.deepEqual((await readPrimary(center, key)).record, record(1));
    assert.deepEqual(await readPrimary(center), { record: undefined, revision: '0' });
    center.set(key, { ...record(2), url: 'not a url' });
    await assert.rejects(readPrimary(center, key), new RegExp(`^InvalidPrimaryRecord: memory key ${key}: .*"url"`));
  });

  void test('readPrimary names the center, the key and the bad field of a stored record', async () => {
    const center = new MemoryCenter();
    center.set(PRIMARY_KEY, { ...record(2), epoch: 'two' });
    await assert.rejects(readPrimary(center), (err: unknown) => {
      assert.ok(err instanceof InvalidPrimaryRecord);
      assert.equal(err.field, 'epoch');
      assert.match(err.message, new RegExp(`^memory key ${PRIMARY_KEY}: primary record field "epoch"`));
      return true;
    });
    await assert.rejects(casPrimary(center, 2, record(3)), /field "epoch"/);
  });
});
