/**
 * planRegionCopy: what one pass of the copy to a standby region sends and removes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planRegionCopy } from '../../src/region/copy-plan';
import type { StoredObject } from '../../src/storage/store';

const at = (s: number) => new Date(Date.UTC(2026, 10, 30, 12, 0, s));
const obj = (key: string, s: number, bytes = 10, etag = `"${key}-${bytes}"`): StoredObject => ({
  key,
  bytes,
  lastModified: at(s),
  etag,
});

void describe('planRegionCopy', () => {
  void test('copies what the standby lacks, data before the manifest that commits it, oldest first', () => {
    const source = [
      obj('kimiclaw/L2/b1/manifest.json', 5),
      obj('kimiclaw/L2/b1/artifact.duckdb.zst', 4),
      obj('kimiclaw/log/1-10-e1.ndjson.zst', 2),
    ];
    const plan = planRegionCopy(source, [], at(12).getTime());
    assert.deepEqual(
      plan.copy.map((o) => o.key),
      ['kimiclaw/log/1-10-e1.ndjson.zst', 'kimiclaw/L2/b1/artifact.duckdb.zst', 'kimiclaw/L2/b1/manifest.json'],
    );
    assert.equal(plan.lagSeconds, 10, 'the oldest lacking object was sealed 10 s ago');
    assert.deepEqual(plan.remove, []);
  });

  void test('an object the standby holds with the same checksum is not sent again; a changed one is', () => {
    const source = [obj('a', 1), obj('b', 2, 10, '"new"')];
    const target = [obj('a', 3), obj('b', 3, 10, '"old"')];
    const plan = planRegionCopy(source, target, at(10).getTime());
    assert.deepEqual(
      plan.copy.map((o) => o.key),
      ['b'],
    );
    assert.equal(plan.same, 1);
  });

  void test('what the primary no longer holds (pruned, retired) is removed from the standby', () => {
    const plan = planRegionCopy([obj('kept', 1)], [obj('kept', 1), obj('pruned', 1)], at(5).getTime());
    assert.deepEqual(plan.remove, ['pruned']);
    assert.deepEqual(plan.copy, []);
    assert.equal(plan.lagSeconds, 0, 'nothing lacking: no lag');
  });
});
