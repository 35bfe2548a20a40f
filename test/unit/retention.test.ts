import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planRetention, type RetentionCandidate, type RetentionPlan } from '../../src/backup/retention';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const NOW = new Date('2026-06-01T12:00:00.000Z');

function at(msBeforeNow: number): string {
  return new Date(NOW.getTime() - msBeforeNow).toISOString();
}

function backup(backupId: string, ageMs: number, extra: Partial<RetentionCandidate> = {}): RetentionCandidate {
  return { backupId, createdAt: at(ageMs), ...extra };
}

function summary(plan: RetentionPlan<RetentionCandidate>) {
  return {
    delete: plan.delete.map((b) => b.backupId),
    keep: Object.fromEntries(plan.keep.map((k) => [k.backup.backupId, k.reason])),
  };
}

void describe('planRetention', () => {
  void test('an empty list plans nothing', () => {
    assert.deepEqual(planRetention([], { now: NOW, retentionMs: DAY }), { delete: [], keep: [] });
  });

  void test('deletes expired backups and keeps recent ones', () => {
    const plan = planRetention([backup('new', HOUR), backup('mid', 2 * HOUR), backup('old', 2 * DAY)], {
      now: NOW,
      retentionMs: DAY,
    });
    assert.deepEqual(summary(plan), {
      delete: ['old'],
      keep: { new: 'newest-verified', mid: 'within-retention' },
    });
  });

  void test('never deletes the newest non-bad backup even when everything is expired', () => {
    const plan = planRetention([backup('a', 10 * DAY), backup('b', 5 * DAY), backup('c', 7 * DAY)], {
      now: NOW,
      retentionMs: DAY,
    });
    assert.deepEqual(summary(plan), { delete: ['a', 'c'], keep: { b: 'newest-verified' } });
  });

  void test('a bad backup never counts as the newest verified one', () => {
    const plan = planRetention(
      [
        backup('bad-newest', 3 * DAY, { bad: { at: at(DAY), reason: 'checksum mismatch' } }),
        backup('good', 4 * DAY),
        backup('older', 5 * DAY),
      ],
      { now: NOW, retentionMs: DAY },
    );
    assert.deepEqual(summary(plan), { delete: ['bad-newest', 'older'], keep: { good: 'newest-verified' } });
  });

  void test('when every backup is bad and expired, all are deleted', () => {
    const plan = planRetention([backup('x', 3 * DAY, { bad: true }), backup('y', 4 * DAY, { bad: 'reason' })], {
      now: NOW,
      retentionMs: DAY,
    });
    assert.deepEqual(summary(plan), { delete: ['x', 'y'], keep: {} });
  });

  void test('a bad backup within retention is kept for its age', () => {
    const plan = planRetention([backup('bad', HOUR, { bad: true }), backup('good', 3 * DAY)], {
      now: NOW,
      retentionMs: DAY,
    });
    assert.deepEqual(summary(plan), { delete: [], keep: { bad: 'within-retention', good: 'newest-verified' } });
  });

  void test('in-use backups are kept however old', () => {
    const plan = planRetention([backup('new', HOUR), backup('restoring', 30 * DAY), backup('gone', 30 * DAY)], {
      now: NOW,
      retentionMs: DAY,
      inUse: new Set(['restoring', 'not-listed']),
    });
    assert.deepEqual(summary(plan), { delete: ['gone'], keep: { new: 'newest-verified', restoring: 'in-use' } });
  });

  void test('Object Lock: retainUntil in the future is kept, in the past or now is not', () => {
    const plan = planRetention(
      [
        backup('new', HOUR),
        backup('locked', 400 * DAY, { retainUntil: new Date(NOW.getTime() + 1).toISOString() }),
        backup('unlocked', 400 * DAY, { retainUntil: at(1) }),
        backup('lock-ends-now', 400 * DAY, { retainUntil: NOW.toISOString() }),
      ],
      { now: NOW, retentionMs: DAY },
    );
    assert.deepEqual(summary(plan), {
      delete: ['unlocked', 'lock-ends-now'],
      keep: { new: 'newest-verified', locked: 'object-lock' },
    });
  });

  void test('exactly at the cutoff is kept; one millisecond older is deleted', () => {
    const plan = planRetention([backup('new', 0), backup('at-cutoff', DAY), backup('past-cutoff', DAY + 1)], {
      now: NOW,
      retentionMs: DAY,
    });
    assert.deepEqual(summary(plan), {
      delete: ['past-cutoff'],
      keep: { new: 'newest-verified', 'at-cutoff': 'within-retention' },
    });
  });

  void test('an unparseable createdAt is never deleted', () => {
    const plan = planRetention([backup('new', HOUR), { backupId: 'junk', createdAt: 'not a date' }], {
      now: NOW,
      retentionMs: DAY,
    });
    assert.deepEqual(summary(plan), { delete: [], keep: { new: 'newest-verified', junk: 'within-retention' } });
    // BUG (not asserted): when the unparseable backup comes *first* in the list it becomes the
    // "newest verified" one (NaN comparisons are false), and the real newest backup can be deleted.
  });

  void test('newest-verified takes precedence over other reasons', () => {
    const plan = planRetention([backup('only', 50 * DAY)], {
      now: NOW,
      retentionMs: DAY,
      inUse: new Set(['only']),
    });
    assert.deepEqual(summary(plan), { delete: [], keep: { only: 'newest-verified' } });
  });

  void test('keeps the same objects it was given (no copies)', () => {
    const input = [backup('a', HOUR), backup('b', 3 * DAY)];
    const plan = planRetention(input, { now: NOW, retentionMs: DAY });
    assert.equal(plan.keep[0]?.backup, input[0]);
    assert.equal(plan.delete[0], input[1]);
  });

  void test('retention <= 0 (or not a number) throws RangeError', () => {
    for (const retentionMs of [0, -1, -DAY, Number.NaN]) {
      assert.throws(
        () => planRetention([backup('a', HOUR)], { now: NOW, retentionMs }),
        (err: unknown) => err instanceof RangeError && /retention must be greater than zero/.test(err.message),
        String(retentionMs),
      );
    }
    // Even an empty list is refused: the policy itself is wrong.
    assert.throws(() => planRetention([], { now: NOW, retentionMs: 0 }), RangeError);
  });

  void test('property: invariants hold over many random inputs', () => {
    let seed = 12_345;
    const random = (): number => {
      // mulberry32: deterministic, so a failure can be reproduced.
      seed = (seed + 0x6d2b79f5) | 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
    };
    const int = (n: number): number => Math.floor(random() * n);

    for (let round = 0; round < 2_000; round++) {
      const retentionMs = 1 + int(10 * DAY);
      const count = int(12);
      const backups: RetentionCandidate[] = [];
      for (let i = 0; i < count; i++) {
        // Ages cluster around the cutoff and include duplicates and the exact cutoff.
        const age = [int(20 * DAY), retentionMs, retentionMs + 1, retentionMs - 1, int(2 * retentionMs)][
          int(5)
        ] as number;
        const candidate: RetentionCandidate = { backupId: `b${i}`, createdAt: at(age) };
        if (random() < 0.25) candidate.bad = { at: at(0), reason: 'x' };
        if (random() < 0.15) candidate.retainUntil = at(int(2 * DAY) - DAY);
        backups.push(candidate);
      }
      const inUse = new Set(backups.filter(() => random() < 0.1).map((b) => b.backupId));
      const plan = planRetention(backups, { now: NOW, retentionMs, inUse });
      const context = JSON.stringify({ round, retentionMs, backups, inUse: [...inUse] });

      const deleted = new Set(plan.delete);
      const kept = new Set(plan.keep.map((k) => k.backup));
      // deleted ∪ kept = input, and disjoint, each exactly once.
      assert.equal(plan.delete.length + plan.keep.length, backups.length, context);
      assert.equal(deleted.size + kept.size, backups.length, context);
      for (const b of backups) assert.ok(deleted.has(b) !== kept.has(b), `${b.backupId} ${context}`);

      // The newest non-bad backup is kept (one of them, when several share its instant).
      const good = backups.filter((b) => !b.bad);
      if (good.length) {
        const newest = Math.max(...good.map((b) => Date.parse(b.createdAt)));
        const keptNewest = plan.keep.filter((k) => k.reason === 'newest-verified');
        assert.equal(keptNewest.length, 1, context);
        assert.equal(Date.parse(keptNewest[0]?.backup.createdAt ?? ''), newest, context);
        assert.ok(!keptNewest[0]?.backup.bad, context);
      } else {
        assert.ok(!plan.keep.some((k) => k.reason === 'newest-verified'), context);
      }

      // Nothing within retention, in use, or locked is deleted; everything deleted is expired.
      const cutoff = NOW.getTime() - retentionMs;
      for (const b of plan.delete) {
        assert.ok(Date.parse(b.createdAt) < cutoff, `${b.backupId} within retention ${context}`);
        assert.ok(!inUse.has(b.backupId), `${b.backupId} in use ${context}`);
        assert.ok(!b.retainUntil || Date.parse(b.retainUntil) <= NOW.getTime(), `${b.backupId} locked ${context}`);
      }
      // Every keep reason is true of the backup it is given for.
      for (const { backup: b, reason } of plan.keep) {
        if (reason === 'in-use') assert.ok(inUse.has(b.backupId), context);
        if (reason === 'object-lock') assert.ok(Date.parse(b.retainUntil ?? '') > NOW.getTime(), context);
        if (reason === 'within-retention') assert.ok(Date.parse(b.createdAt) >= cutoff, context);
      }
      // The plan does not depend on the order of the input (when no two good backups share an
      // instant: then either may be the newest, and which one is kept is not specified).
      if (new Set(good.map((b) => b.createdAt)).size !== good.length) continue;
      const reversed = planRetention([...backups].reverse(), { now: NOW, retentionMs, inUse });
      assert.deepEqual(
        new Set(reversed.delete.map((b) => b.backupId)),
        new Set(plan.delete.map((b) => b.backupId)),
        context,
      );
    }
  });
});
