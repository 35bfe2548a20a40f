import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatMicros, instantOfDate, parseInstant } from '../../src/restore/instant';

const BASE_MICROS = Date.parse('2026-06-01T10:00:00Z') * 1000;

void describe('parseInstant', () => {
  void test('UTC with and without seconds and fraction', () => {
    assert.deepEqual(parseInstant('2026-06-01T10:00:00Z'), { micros: BASE_MICROS, iso: '2026-06-01T10:00:00.000000Z' });
    assert.equal(parseInstant('2026-06-01T10:00Z')?.iso, '2026-06-01T10:00:00.000000Z');
    assert.equal(parseInstant('2026-06-01T10:00:00.5Z')?.micros, BASE_MICROS + 500_000);
    assert.equal(parseInstant('2026-06-01T10:00:00.123456Z')?.micros, BASE_MICROS + 123_456);
    assert.equal(parseInstant('2026-06-01t10:00:00z')?.micros, BASE_MICROS);
  });

  void test('keeps microseconds that a Date would lose', () => {
    const a = parseInstant('2026-06-01T10:00:00.123456Z');
    const b = parseInstant('2026-06-01T10:00:00.123457Z');
    assert.ok(a && b);
    assert.equal(b.micros - a.micros, 1);
    assert.equal(b.iso, '2026-06-01T10:00:00.123457Z');
  });

  void test('digits past the microsecond are dropped, never rounded up', () => {
    assert.equal(parseInstant('2026-06-01T10:00:00.123456999Z')?.iso, '2026-06-01T10:00:00.123456Z');
    assert.equal(parseInstant('2026-06-01T10:00:00.000000999Z')?.micros, BASE_MICROS);
  });

  void test('offsets are applied: the same instant in three timezones', () => {
    for (const text of ['2026-06-01T12:00:00+02:00', '2026-06-01T12:00:00+0200', '2026-06-01T05:30:00-04:30']) {
      assert.equal(parseInstant(text)?.iso, '2026-06-01T10:00:00.000000Z', text);
    }
    assert.equal(parseInstant('2026-06-01T00:30:00+01:00')?.iso, '2026-05-31T23:30:00.000000Z');
    assert.equal(parseInstant('2026-06-01T10:00:00-00:00')?.micros, BASE_MICROS);
  });

  void test('a time without a timezone is refused (it would mean the worker’s zone)', () => {
    assert.equal(parseInstant('2026-06-01T10:00:00'), undefined);
    assert.equal(parseInstant('2026-06-01T10:00:00.123'), undefined);
    assert.equal(parseInstant('2026-06-01'), undefined);
  });

  void test('impossible dates and times are refused', () => {
    for (const text of [
      '2026-02-30T10:00:00Z',
      '2026-13-01T10:00:00Z',
      '2026-00-10T10:00:00Z',
      '2026-06-00T10:00:00Z',
      '2026-06-01T24:00:00Z',
      '2026-06-01T10:60:00Z',
      '2026-06-01T10:00:60Z',
      '2026-06-01T10:00:00+24:00',
      '2026-06-01T10:00:00+01:60',
      '2025-02-29T10:00:00Z',
    ]) {
      assert.equal(parseInstant(text), undefined, text);
    }
    assert.ok(parseInstant('2028-02-29T10:00:00Z'));
  });

  void test('anything else is refused', () => {
    for (const text of [
      '',
      'now',
      'yesterday',
      '1780308000',
      ' 2026-06-01T10:00:00Z',
      '2026-06-01T10:00:00Z ',
      '2026-06-01 10:00:00Z',
      '2026-06-01T10:00:00.Z',
      '2026-06-01T10:00:00.1234567890Z',
      '2026-06-01T10:00:00+2',
      '+2026-06-01T10:00:00Z',
      'Mon, 01 Jun 2026 10:00:00 GMT',
    ]) {
      assert.equal(parseInstant(text), undefined, JSON.stringify(text));
    }
  });

  void test('only times whose microseconds are safe integers (about 1685-2255) are accepted', () => {
    assert.equal(parseInstant('0099-01-01T00:00:00Z'), undefined);
    assert.equal(parseInstant('1700-03-01T00:00:00Z')?.iso, '1700-03-01T00:00:00.000000Z');
    assert.equal(parseInstant('1969-12-31T23:59:59.999999Z')?.micros, -1);
    assert.equal(parseInstant('1969-12-31T23:59:59.999999Z')?.iso, '1969-12-31T23:59:59.999999Z');
    assert.equal(parseInstant('1970-01-01T00:00:00Z')?.micros, 0);
    assert.ok(parseInstant('2255-01-01T00:00:00Z'));
    assert.equal(parseInstant('2300-01-01T00:00:00Z'), undefined);
  });
});

void describe('instantOfDate and formatMicros', () => {
  void test('a Date becomes microseconds', () => {
    assert.deepEqual(instantOfDate(new Date('2026-06-01T10:00:00.250Z')), {
      micros: BASE_MICROS + 250_000,
      iso: '2026-06-01T10:00:00.250000Z',
    });
  });

  void test('formats with six fractional digits', () => {
    assert.equal(formatMicros(BASE_MICROS + 7), '2026-06-01T10:00:00.000007Z');
    assert.equal(formatMicros(0), '1970-01-01T00:00:00.000000Z');
  });
});
