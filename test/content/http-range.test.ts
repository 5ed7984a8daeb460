/**
 * Range headers per RFC 9110 §14: one byte range served, anything we ignore served whole, and a
 * well-formed range that selects nothing refused with the size for the 416's Content-Range.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  MAX_RANGE_HEADER_LENGTH, RangeNotSatisfiableError, contentRangeHeader, parseRange, unsatisfiedRangeHeader
} from '../../src/content/http-range.ts'

/** Runs parseRange, turning the 416 case into a value so cases read as a table. */
function parse (header: string | undefined, size: number): { start: number, end: number } | null | 416 {
  try {
    return parseRange(header, size)
  } catch (err) {
    if (err instanceof RangeNotSatisfiableError) {
      assert.equal(err.name, 'RangeNotSatisfiableError')
      assert.equal(err.size, size)
      return 416
    }
    throw err
  }
}

describe('parseRange', () => {
  const cases: Array<[string | undefined, number, ReturnType<typeof parse>]> = [
    [undefined, 100, null],
    ['bytes=0-0', 100, { start: 0, end: 0 }],
    ['bytes=0-99', 100, { start: 0, end: 99 }],
    ['bytes=10-19', 100, { start: 10, end: 19 }],
    ['bytes=10-', 100, { start: 10, end: 99 }],
    ['bytes=99-', 100, { start: 99, end: 99 }],
    ['bytes=90-1000', 100, { start: 90, end: 99 }],
    ['bytes=0-99999999999999999999999', 100, { start: 0, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-100', 100, { start: 0, end: 99 }],
    ['bytes=-1000', 100, { start: 0, end: 99 }],
    ['bytes=-99999999999999999999999', 100, { start: 0, end: 99 }],
    ['bytes=007-008', 100, { start: 7, end: 8 }],
    // Start at or beyond the end, or an empty suffix: nothing selected.
    ['bytes=100-', 100, 416],
    ['bytes=100-200', 100, 416],
    ['bytes=99999999999999999999999-', 100, 416],
    ['bytes=-0', 100, 416],
    // An empty representation: no int-range overlaps it; a suffix range gets the (empty) whole.
    ['bytes=0-', 0, 416],
    ['bytes=0-0', 0, 416],
    ['bytes=-5', 0, null],
    ['bytes=-0', 0, 416],
    // Case and whitespace.
    ['Bytes=0-1', 100, { start: 0, end: 1 }],
    ['BYTES=0-1', 100, { start: 0, end: 1 }],
    ['  bytes=0-1 \t', 100, { start: 0, end: 1 }],
    ['bytes= 0-1', 100, { start: 0, end: 1 }],
    ['bytes=0-1, ', 100, { start: 0, end: 1 }],
    ['bytes=,0-1', 100, { start: 0, end: 1 }],
    ['bytes = 0-1', 100, null],
    ['bytes=0 - 1', 100, null],
    // Several ranges: ignored, the whole representation is sent.
    ['bytes=0-1,5-6', 100, null],
    ['bytes=0-1, 5-6', 100, null],
    ['bytes=500-600,700-800', 100, null],
    // Malformed or another unit: ignored.
    ['', 100, null],
    ['bytes', 100, null],
    ['bytes=', 100, null],
    ['bytes=-', 100, null],
    ['bytes=a-b', 100, null],
    ['bytes=1-a', 100, null],
    ['bytes=--1', 100, null],
    ['bytes=1-2-3', 100, null],
    ['bytes=+1-2', 100, null],
    ['bytes=0x10-20', 100, null],
    ['bytes=1.5-2', 100, null],
    ['bytes=٣-٤', 100, null],
    ['bytes=20-10', 100, null],
    ['items=0-1', 100, null],
    ['bytes0-1', 100, null],
    ['garbage', 100, null],
    ['=0-1', 100, null],
    ['bytes=0-1' + ' '.repeat(MAX_RANGE_HEADER_LENGTH), 100, null]
  ]
  for (const [header, size, want] of cases) {
    it(`${JSON.stringify(header)} of ${size} bytes → ${JSON.stringify(want)}`, () => {
      assert.deepEqual(parse(header, size), want)
    })
  }

  it('refuses a bad size', () => {
    assert.throws(() => parseRange('bytes=0-1', -1), TypeError)
    assert.throws(() => parseRange('bytes=0-1', 1.5), TypeError)
  })

  it('stays in bounds and agrees with a reference model (property)', () => {
    /** The RFC's rules written out directly, on small numbers. */
    function model (kind: 'int' | 'open' | 'suffix', a: number, b: number, size: number): ReturnType<typeof parse> {
      if (kind === 'suffix') {
        if (a === 0) return 416
        if (size === 0) return null
        return { start: Math.max(0, size - a), end: size - 1 }
      }
      if (kind === 'int' && b < a) return null
      if (a >= size) return 416
      return { start: a, end: kind === 'open' ? size - 1 : Math.min(b, size - 1) }
    }
    const spec = fc.record({
      kind: fc.constantFrom('int' as const, 'open' as const, 'suffix' as const),
      a: fc.nat({ max: 2000 }),
      b: fc.nat({ max: 2000 }),
      size: fc.nat({ max: 1500 }),
      unit: fc.constantFrom('bytes', 'Bytes', 'BYTES', 'bYtEs'),
      pad: fc.constantFrom('', ' ', '\t', '  ')
    })
    fc.assert(fc.property(spec, ({ kind, a, b, size, unit, pad }) => {
      const range = kind === 'suffix' ? `-${a}` : kind === 'open' ? `${a}-` : `${a}-${b}`
      const got = parse(`${pad}${unit}=${pad}${range}${pad}`, size)
      assert.deepEqual(got, model(kind, a, b, size))
      if (got !== null && got !== 416) {
        assert.ok(got.start >= 0 && got.start <= got.end && got.end < size)
        assert.equal(contentRangeHeader(got.start, got.end, size), `bytes ${got.start}-${got.end}/${size}`)
      }
    }), { seed: 9110, numRuns: 2000 })
  })

  it('never throws anything but RangeNotSatisfiableError on arbitrary headers (property)', () => {
    fc.assert(fc.property(fc.string({ maxLength: 40 }), fc.nat({ max: 1000 }), (header, size) => {
      const got = parse('bytes=' + header, size)
      if (got !== null && got !== 416) assert.ok(got.start >= 0 && got.start <= got.end && got.end < size)
      parse(header, size)
    }), { seed: 14, numRuns: 2000 })
  })
})

describe('Content-Range', () => {
  it('formats a 206 and a 416 value', () => {
    assert.equal(contentRangeHeader(0, 0, 1), 'bytes 0-0/1')
    assert.equal(contentRangeHeader(10, 19, 100), 'bytes 10-19/100')
    assert.equal(unsatisfiedRangeHeader(100), 'bytes */100')
    assert.equal(unsatisfiedRangeHeader(0), 'bytes */0')
  })

  it('refuses a range outside the representation', () => {
    assert.throws(() => contentRangeHeader(5, 4, 100), RangeError)
    assert.throws(() => contentRangeHeader(0, 100, 100), RangeError)
    assert.throws(() => contentRangeHeader(-1, 1, 100), RangeError)
    assert.throws(() => contentRangeHeader(0, 0, 0), RangeError)
  })
})
