import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  contiguousFrom,
  epochEndAfter,
  epochOfLsn,
  coveredRanges,
  isWholeSegment,
  parseSegmentKey,
  reachFrom,
  segmentKey,
  stepRows,
  type Coverage,
  type Segment,
} from '../../src/restore/segments';

function seg(startLsn: number, endLsn: number, rows?: number): Segment {
  return {
    startLsn,
    endLsn,
    key: segmentKey('kimiclaw', startLsn, endLsn, 1),
    ...(rows === undefined ? {} : { rows }),
  };
}

/** Steps as "segment:from-to" so a failure shows the whole plan at once. */
function summary(coverage: Coverage) {
  return {
    steps: coverage.steps.map((s) => `${s.segment.startLsn}-${s.segment.endLsn}:${s.fromLsn}-${s.toLsn}`),
    reachedLsn: coverage.reachedLsn,
    gap: coverage.gap,
  };
}

/** Deterministic pseudo-random numbers (mulberry32), so a failing case can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

void describe('segmentKey', () => {
  void test('pads both LSNs to 20 digits under <database>/log/, and names the epoch', () => {
    assert.equal(
      segmentKey('kimiclaw', 1201, 1375, 3),
      'kimiclaw/log/00000000000000001201-00000000000000001375-e3.ndjson.zst',
    );
    assert.equal(
      segmentKey('events_2', 1, 1, 1),
      'events_2/log/00000000000000000001-00000000000000000001-e1.ndjson.zst',
    );
    assert.equal(
      segmentKey('kimiclaw', 1, Number.MAX_SAFE_INTEGER, 12),
      'kimiclaw/log/00000000000000000001-00009007199254740991-e12.ndjson.zst',
    );
  });

  void test('reads keys written before epochs were named, and refuses epoch 0', () => {
    assert.deepEqual(parseSegmentKey('kimiclaw/log/00000000000000001201-00000000000000001375.ndjson.zst'), {
      database: 'kimiclaw',
      startLsn: 1201,
      endLsn: 1375,
    });
    assert.deepEqual(parseSegmentKey(segmentKey('kimiclaw', 5, 9, 4)), {
      database: 'kimiclaw',
      startLsn: 5,
      endLsn: 9,
      epoch: 4,
    });
    assert.equal(parseSegmentKey('kimiclaw/log/00000000000000000005-00000000000000000009-e0.ndjson.zst'), undefined);
    assert.throws(() => segmentKey('kimiclaw', 5, 9, 0), /epoch must be an integer ≥ 1, got 0/);
  });

  void test('keys sort in LSN order', () => {
    const keys = [
      segmentKey('kimiclaw', 1001, 1200, 1),
      segmentKey('kimiclaw', 99, 1000, 1),
      segmentKey('kimiclaw', 1, 98, 1),
    ];
    assert.deepEqual(
      [...keys].sort().map((k) => parseSegmentKey(k)?.startLsn),
      [1, 99, 1001],
    );
  });

  void test('refuses a bad database name or range', () => {
    assert.throws(() => segmentKey('../etc', 1, 2, 1), /"\.\.\/etc" is not a database name/);
    assert.throws(() => segmentKey('Kimiclaw', 1, 2, 1), RangeError);
    assert.throws(() => segmentKey('kimiclaw', 0, 2, 1), /startLsn must be an integer ≥ 1, got 0/);
    assert.throws(() => segmentKey('kimiclaw', 5, 4, 1), /endLsn must be an integer ≥ startLsn \(5\), got 4/);
    assert.throws(() => segmentKey('kimiclaw', 1.5, 4, 1), RangeError);
    assert.throws(() => segmentKey('kimiclaw', 1, Number.MAX_SAFE_INTEGER + 1, 1), RangeError);
    assert.throws(() => segmentKey('kimiclaw', Number.NaN, 4, 1), RangeError);
  });
});

void describe('parseSegmentKey', () => {
  void test('round-trips segmentKey', () => {
    for (const [db, start, end] of [
      ['kimiclaw', 1, 1],
      ['kimiclaw', 1201, 1375],
      ['a', 42, Number.MAX_SAFE_INTEGER],
    ] as const) {
      assert.deepEqual(parseSegmentKey(segmentKey(db, start, end, 2)), {
        database: db,
        startLsn: start,
        endLsn: end,
        epoch: 2,
      });
    }
  });

  void test('refuses anything that is not exactly a segment key', () => {
    const good = 'kimiclaw/log/00000000000000001201-00000000000000001375.ndjson.zst';
    assert.ok(parseSegmentKey(good));
    for (const key of [
      '',
      'kimiclaw/log/',
      '/kimiclaw/log/00000000000000001201-00000000000000001375.ndjson.zst',
      `prefix/${good}`,
      `${good}.tmp`,
      `${good}/`,
      'kimiclaw/log/00000000000000001201-00000000000000001375.ndjson',
      'kimiclaw/log/00000000000000001201-00000000000000001375.ndjson.gz',
      'kimiclaw/log/1201-1375.ndjson.zst',
      'kimiclaw/log/0000000000000001201-00000000000000001375.ndjson.zst',
      'kimiclaw/log/000000000000000001201-00000000000000001375.ndjson.zst',
      'kimiclaw/L2/00000000000000001201-00000000000000001375.ndjson.zst',
      'Kimiclaw/log/00000000000000001201-00000000000000001375.ndjson.zst',
      '../log/00000000000000001201-00000000000000001375.ndjson.zst',
      'kimiclaw/log/../00000000000000001201-00000000000000001375.ndjson.zst',
      'kimiclaw/log/+0000000000000001201-00000000000000001375.ndjson.zst',
      'kimiclaw/log/00000000000000001201_00000000000000001375.ndjson.zst',
    ]) {
      assert.equal(parseSegmentKey(key), undefined, key);
    }
  });

  void test('refuses ranges that cannot be: end before start, LSN 0, beyond safe integers', () => {
    assert.equal(parseSegmentKey('kimiclaw/log/00000000000000001375-00000000000000001201.ndjson.zst'), undefined);
    assert.equal(parseSegmentKey('kimiclaw/log/00000000000000000000-00000000000000000005.ndjson.zst'), undefined);
    assert.equal(parseSegmentKey('kimiclaw/log/00000000000000000001-99999999999999999999.ndjson.zst'), undefined);
    assert.equal(parseSegmentKey('kimiclaw/log/00009007199254740992-00009007199254740993.ndjson.zst'), undefined);
    // A one-LSN segment is fine.
    assert.deepEqual(parseSegmentKey('kimiclaw/log/00000000000000000007-00000000000000000007.ndjson.zst'), {
      database: 'kimiclaw',
      startLsn: 7,
      endLsn: 7,
    });
  });
});

void describe('contiguousFrom', () => {
  void test('no segments: nothing to replay, no gap', () => {
    assert.deepEqual(summary(contiguousFrom([], 100)), { steps: [], reachedLsn: 100, gap: undefined });
  });

  void test('a chain of segments, in any input order, replays in LSN order', () => {
    const segments = [seg(1301, 1375), seg(1201, 1300), seg(1001, 1200)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000)), {
      steps: ['1001-1200:1001-1200', '1201-1300:1201-1300', '1301-1375:1301-1375'],
      reachedLsn: 1375,
      gap: undefined,
    });
  });

  void test('segments wholly at or before fromLsn are ignored', () => {
    const segments = [seg(1, 500), seg(501, 1000), seg(1001, 1200)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000)).steps, ['1001-1200:1001-1200']);
    assert.deepEqual(summary(contiguousFrom(segments, 1200)), { steps: [], reachedLsn: 1200, gap: undefined });
  });

  void test('a backup taken inside a segment replays only the rest of it', () => {
    const segments = [seg(1001, 1200), seg(1201, 1300)];
    assert.deepEqual(summary(contiguousFrom(segments, 1150)).steps, ['1001-1200:1151-1200', '1201-1300:1201-1300']);
  });

  void test('fromLsn 0 (an empty database) starts at LSN 1', () => {
    assert.deepEqual(summary(contiguousFrom([seg(1, 10), seg(11, 20)], 0)), {
      steps: ['1-10:1-10', '11-20:11-20'],
      reachedLsn: 20,
      gap: undefined,
    });
  });

  void test('a segment starting past fromLsn + 1 is a gap right away', () => {
    assert.deepEqual(summary(contiguousFrom([seg(1002, 1200)], 1000)), {
      steps: [],
      reachedLsn: 1000,
      gap: { afterLsn: 1000, nextStart: 1002 },
    });
  });

  void test('stops at the first gap and names it', () => {
    const segments = [seg(1001, 1200), seg(1201, 1300), seg(1351, 1375), seg(1376, 1400)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000)), {
      steps: ['1001-1200:1001-1200', '1201-1300:1201-1300'],
      reachedLsn: 1300,
      gap: { afterLsn: 1300, nextStart: 1351 },
    });
  });

  void test('the gap names the nearest later segment, even with several after it', () => {
    const segments = [seg(1001, 1100), seg(1500, 1600), seg(1200, 1300), seg(1250, 1700)];
    assert.deepEqual(contiguousFrom(segments, 1000).gap, { afterLsn: 1100, nextStart: 1200 });
  });

  void test('an overlap (a range archived again) never replays an LSN twice', () => {
    // 1001-1300 and 1201-1400 share 1201-1300: the second applies only 1301-1400.
    const segments = [seg(1001, 1300), seg(1201, 1400)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000)), {
      steps: ['1001-1300:1001-1300', '1201-1400:1301-1400'],
      reachedLsn: 1400,
      gap: undefined,
    });
  });

  void test('overlaps: whole segments are preferred over cut ones, even when that takes more steps', () => {
    // 1-10 then 5-25 (cut to 11-25) would be 2 steps with one cut; 1-10, 11-20, 21-25 are all whole.
    const segments = [seg(1, 10), seg(5, 25), seg(11, 20), seg(21, 25)];
    assert.deepEqual(summary(contiguousFrom(segments, 0)).steps, ['1-10:1-10', '11-20:11-20', '21-25:21-25']);
  });

  void test('overlaps: among whole-segment chains, the fewest segments', () => {
    const segments = [seg(1, 50), seg(51, 100), seg(1, 100), seg(101, 120)];
    assert.deepEqual(summary(contiguousFrom(segments, 0)).steps, ['1-100:1-100', '101-120:101-120']);
  });

  void test('overlaps: fewest segments even when a longer chain gets there first', () => {
    // 1-5, 6-10, 11-30 (three) and 1-20, 21-30 (two) both end at 30 with whole segments.
    const segments = [seg(1, 5), seg(6, 10), seg(11, 30), seg(1, 20), seg(21, 30)];
    assert.deepEqual(summary(contiguousFrom(segments, 0)).steps, ['1-20:1-20', '21-30:21-30']);
  });

  void test('overlaps: a segment inside another is skipped', () => {
    const segments = [seg(1, 100), seg(20, 30), seg(101, 110)];
    assert.deepEqual(summary(contiguousFrom(segments, 0)).steps, ['1-100:1-100', '101-110:101-110']);
  });

  void test('overlaps: the same range listed twice is replayed once', () => {
    const segments = [seg(1, 10), seg(1, 10), seg(11, 20)];
    assert.deepEqual(summary(contiguousFrom(segments, 0)).steps, ['1-10:1-10', '11-20:11-20']);
  });

  void test('overlaps bridge what would otherwise be a gap', () => {
    // 1-10 and 21-30 alone leave a gap; 8-22 joins them with cuts at both ends of the overlap.
    const segments = [seg(1, 10), seg(21, 30), seg(8, 22)];
    assert.deepEqual(summary(contiguousFrom(segments, 0)), {
      steps: ['1-10:1-10', '8-22:11-22', '21-30:23-30'],
      reachedLsn: 30,
      gap: undefined,
    });
  });

  void test('untilLsn cuts the last step', () => {
    const segments = [seg(1001, 1200), seg(1201, 1300), seg(1301, 1375)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000, 1250)), {
      steps: ['1001-1200:1001-1200', '1201-1300:1201-1250'],
      reachedLsn: 1250,
      gap: undefined,
    });
  });

  void test('untilLsn prefers a segment that ends exactly there', () => {
    // 1-100 cut at 50 vs 1-50 whole: the whole one wins.
    const segments = [seg(1, 100), seg(1, 50)];
    assert.deepEqual(summary(contiguousFrom(segments, 0, 50)).steps, ['1-50:1-50']);
  });

  void test('untilLsn at a segment boundary needs no cut', () => {
    const segments = [seg(1001, 1200), seg(1201, 1300), seg(1301, 1375)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000, 1300)).steps, [
      '1001-1200:1001-1200',
      '1201-1300:1201-1300',
    ]);
  });

  void test('untilLsn at or before fromLsn: nothing to replay', () => {
    const segments = [seg(1001, 1200)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000, 1000)), { steps: [], reachedLsn: 1000, gap: undefined });
    assert.deepEqual(summary(contiguousFrom(segments, 1000, 900)), { steps: [], reachedLsn: 1000, gap: undefined });
  });

  void test('untilLsn beyond the archive: reaches what it can; a gap only when the archive resumes later', () => {
    const segments = [seg(1001, 1200)];
    assert.deepEqual(summary(contiguousFrom(segments, 1000, 1300)), {
      steps: ['1001-1200:1001-1200'],
      reachedLsn: 1200,
      gap: undefined,
    });
    assert.deepEqual(contiguousFrom([...segments, seg(1500, 1600)], 1000, 1300).gap, {
      afterLsn: 1200,
      nextStart: 1500,
    });
    // A gap that lies past untilLsn does not matter.
    assert.equal(contiguousFrom([...segments, seg(1500, 1600)], 1000, 1100).gap, undefined);
  });

  void test('refuses invalid arguments rather than guessing', () => {
    assert.throws(() => contiguousFrom([], -1), /fromLsn must be a non-negative integer, got -1/);
    assert.throws(() => contiguousFrom([], 1.5), RangeError);
    assert.throws(() => contiguousFrom([], 0, -3), /untilLsn must be a non-negative integer, got -3/);
    assert.throws(
      () => contiguousFrom([{ startLsn: 10, endLsn: 5, key: 'k' }], 0),
      /segment k: endLsn must be an integer ≥ startLsn \(10\), got 5/,
    );
    assert.throws(() => contiguousFrom([{ startLsn: 0, endLsn: 5, key: 'k' }], 0), /startLsn must be an integer ≥ 1/);
  });

  void test('random archives: every LSN from fromLsn + 1 to the reach replayed exactly once, in order', () => {
    const next = random(20260601);
    for (let round = 0; round < 300; round++) {
      const segments: Segment[] = [];
      let start = 1;
      while (start < 400) {
        const end = start + Math.floor(next() * 40);
        if (next() > 0.08) segments.push(seg(start, end)); // sometimes a hole
        if (next() < 0.3) {
          // a re-archived overlapping range
          const s = Math.max(1, start - Math.floor(next() * 30));
          segments.push(seg(s, s + Math.floor(next() * 60)));
        }
        start = end + 1;
      }
      const fromLsn = Math.floor(next() * 200);
      const until = next() < 0.5 ? undefined : fromLsn + Math.floor(next() * 300);
      const coverage = contiguousFrom(segments, fromLsn, until);
      let expected = fromLsn + 1;
      for (const step of coverage.steps) {
        assert.equal(step.fromLsn, expected, `round ${round}: step starts where the last ended`);
        assert.ok(step.toLsn >= step.fromLsn, `round ${round}: non-empty step`);
        assert.ok(step.segment.startLsn <= step.fromLsn && step.toLsn <= step.segment.endLsn, `round ${round}`);
        expected = step.toLsn + 1;
      }
      assert.equal(coverage.reachedLsn, Math.max(fromLsn, expected - 1), `round ${round}`);
      // The reach is the end of contiguous coverage (capped at until), as the merged ranges say.
      const reach = reachFrom(coveredRanges(segments), fromLsn);
      assert.equal(coverage.reachedLsn, until === undefined ? reach : Math.max(fromLsn, Math.min(reach, until)));
      if (coverage.gap) {
        assert.equal(coverage.gap.afterLsn, coverage.reachedLsn);
        assert.ok(coverage.gap.nextStart > coverage.reachedLsn + 1);
        assert.ok(!segments.some((s) => s.startLsn <= coverage.reachedLsn + 1 && s.endLsn > coverage.reachedLsn));
      }
    }
  });

  void test('a long archive plans quickly', () => {
    const segments: Segment[] = [];
    for (let i = 0; i < 50_000; i++) segments.push(seg(i * 100 + 1, i * 100 + 100));
    const started = performance.now();
    const coverage = contiguousFrom(segments, 0);
    assert.equal(coverage.steps.length, 50_000);
    assert.equal(coverage.reachedLsn, 5_000_000);
    assert.ok(performance.now() - started < 2000, 'planning 50,000 segments takes under 2 s');
  });
});

void describe('coveredRanges and reachFrom', () => {
  void test('merges overlapping and touching segments, keeps gaps', () => {
    const ranges = coveredRanges([seg(21, 30), seg(1, 10), seg(11, 15), seg(14, 18), seg(40, 50), seg(41, 45)]);
    assert.deepEqual(ranges, [
      { fromLsn: 1, toLsn: 18 },
      { fromLsn: 21, toLsn: 30 },
      { fromLsn: 40, toLsn: 50 },
    ]);
  });

  void test('reach: end of the range holding fromLsn + 1, else fromLsn itself', () => {
    const ranges = coveredRanges([seg(1, 18), seg(21, 30)]);
    assert.equal(reachFrom(ranges, 0), 18);
    assert.equal(reachFrom(ranges, 17), 18);
    assert.equal(reachFrom(ranges, 18), 18); // LSN 19 is missing
    assert.equal(reachFrom(ranges, 20), 30);
    assert.equal(reachFrom(ranges, 30), 30);
    assert.equal(reachFrom(ranges, 100), 100);
    assert.equal(reachFrom([], 7), 7);
  });
});

void describe('isWholeSegment and stepRows', () => {
  void test('rows are known only for whole segments with a count', () => {
    const s = seg(11, 20, 500);
    assert.equal(isWholeSegment({ segment: s, fromLsn: 11, toLsn: 20 }), true);
    assert.equal(stepRows({ segment: s, fromLsn: 11, toLsn: 20 }), 500);
    assert.equal(stepRows({ segment: s, fromLsn: 12, toLsn: 20 }), undefined);
    assert.equal(stepRows({ segment: s, fromLsn: 11, toLsn: 19 }), undefined);
    assert.equal(stepRows({ segment: seg(11, 20), fromLsn: 11, toLsn: 20 }), undefined);
    assert.equal(stepRows({ segment: seg(11, 20, 0), fromLsn: 11, toLsn: 20 }), 0);
  });
});

void describe('epochs of the history', () => {
  // Epoch 2 began after LSN 100, epoch 5 after LSN 250 (a restore rewound to 250 and opened epoch 5).
  const history = [
    { epoch: 2, startLsn: 100 },
    { epoch: 5, startLsn: 250 },
  ];

  void test('epochOfLsn: the epoch that wrote an LSN', () => {
    assert.equal(epochOfLsn([], 7), 1);
    assert.equal(epochOfLsn(history, 100), 1);
    assert.equal(epochOfLsn(history, 101), 2);
    assert.equal(epochOfLsn(history, 250), 2);
    assert.equal(epochOfLsn(history, 251), 5);
  });

  void test('epochEndAfter: where a segment must stop to hold one epoch', () => {
    assert.equal(epochEndAfter(history, 0), 100);
    assert.equal(epochEndAfter(history, 99), 100);
    assert.equal(epochEndAfter(history, 100), 250);
    assert.equal(epochEndAfter(history, 250), undefined);
    assert.equal(epochEndAfter([], 10), undefined);
  });
});
