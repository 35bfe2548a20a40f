import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DURATION_UNITS, formatDuration, parseDuration } from '../../src/duration';

const SECOND = 1_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

void describe('parseDuration', () => {
  void test('parses every unit', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('90s'), 90 * SECOND);
    assert.equal(parseDuration('15m'), 15 * 60 * SECOND);
    assert.equal(parseDuration('24h'), 24 * HOUR);
    assert.equal(parseDuration('30d'), 30 * DAY);
    assert.equal(parseDuration('2w'), 14 * DAY);
  });

  void test('a year is 365 days: 7y is 2,555 days', () => {
    assert.equal(parseDuration('1y'), 365 * DAY);
    assert.equal(parseDuration('7y'), 2_555 * DAY);
  });

  void test('accepts decimals, surrounding whitespace and a space before the unit', () => {
    assert.equal(parseDuration('1.5h'), 1.5 * HOUR);
    assert.equal(parseDuration(' 24h '), 24 * HOUR);
    assert.equal(parseDuration('24 h'), 24 * HOUR);
  });

  void test('zero and negative values parse (callers decide whether they are allowed)', () => {
    assert.equal(parseDuration('0d'), 0);
    assert.equal(parseDuration('-1h'), -HOUR);
  });

  void test('returns undefined for text that is not a duration', () => {
    for (const text of ['', '24', 'h', '1H', '1e3s', '1h30m', '.5h', '1.h', 'twelve hours', '24hours', '5 mins']) {
      assert.equal(parseDuration(text), undefined, JSON.stringify(text));
    }
  });

  void test('DURATION_UNITS lists the accepted units', () => {
    assert.deepEqual([...DURATION_UNITS].sort(), ['d', 'h', 'm', 'ms', 's', 'w', 'y']);
  });
});

void describe('formatDuration', () => {
  void test('picks the largest unit that divides exactly', () => {
    assert.equal(formatDuration(DAY), '1d');
    assert.equal(formatDuration(14 * DAY), '2w');
    assert.equal(formatDuration(365 * DAY), '1y');
    assert.equal(formatDuration(2 * 365 * DAY), '2y');
    assert.equal(formatDuration(90 * SECOND), '90s');
    assert.equal(formatDuration(1.5 * HOUR), '90m');
    assert.equal(formatDuration(SECOND), '1s');
  });

  void test('falls back to milliseconds', () => {
    assert.equal(formatDuration(0), '0ms');
    assert.equal(formatDuration(1), '1ms');
    assert.equal(formatDuration(999), '999ms');
    assert.equal(formatDuration(1_500), '1500ms');
  });

  void test('negative durations keep their sign', () => {
    assert.equal(formatDuration(-HOUR), '-1h');
  });

  void test('parseDuration(formatDuration(ms)) === ms for many integers', () => {
    const samples = [0, 1, 999, 1_000, 61_000, HOUR, DAY, 8 * DAY, 365 * DAY, 400 * DAY];
    let seed = 7;
    for (let i = 0; i < 500; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      const unit = [1, SECOND, 60 * SECOND, HOUR, DAY][i % 5] as number;
      samples.push((seed % 10_000) * unit);
    }
    for (const ms of samples) {
      const text = formatDuration(ms);
      assert.equal(parseDuration(text), ms, `${ms} → ${text}`);
    }
  });
});
