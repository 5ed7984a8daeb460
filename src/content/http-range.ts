/**
 * The HTTP Range request header (RFC 9110 §14) for serving content over our HTTP API, so media
 * players can seek and downloads can resume while only the covering blocks are fetched.
 *
 * Only a single byte range is served. A header asking for several ranges ('bytes=0-1,5-6') is
 * ignored and the whole representation is sent with 200, which RFC 9110 §14.2 allows (a server MAY
 * ignore Range); that spares us multipart/byteranges, and its overlapping-range abuse, for a case
 * browsers and media players do not use. A header we cannot parse, or whose unit is not 'bytes',
 * is ignored the same way (§14.2: an unknown unit or an invalid ranges-specifier MAY be ignored).
 * A well-formed single range that selects nothing gets RangeNotSatisfiableError, for a 416 with
 * `Content-Range: bytes *\/size`.
 */

/** Characters of a Range header we look at; longer ones are ignored. */
export const MAX_RANGE_HEADER_LENGTH = 1024

export class RangeNotSatisfiableError extends Error {
  name = 'RangeNotSatisfiableError'
  /** Current length of the representation, for `Content-Range: bytes *\/size`. */
  size: number

  constructor (size: number, message = `range not satisfiable for ${size} bytes`) {
    super(message)
    this.size = size
  }
}

export interface ByteRange {
  start: number
  /** Inclusive. */
  end: number
}

/** bytes=first-[last] or bytes=-suffix; the unit is case-insensitive (RFC 9110 §14.1). */
const RANGE_SPEC = /^(?:(\d+)-(\d*)|-(\d+))$/
const RANGE_UNIT = /^bytes$/i

function assertSize (size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new TypeError('size must be a non-negative integer')
}

/**
 * The byte range of a `size`-byte representation that a Range header asks for, or null to send
 * the whole representation (no header, a header we ignore, or a suffix range of an empty one).
 */
export function parseRange (header: string | undefined, size: number): ByteRange | null {
  assertSize(size)
  if (header == null || header.length > MAX_RANGE_HEADER_LENGTH) return null
  const value = header.trim()
  const eq = value.indexOf('=')
  if (eq < 0 || !RANGE_UNIT.test(value.slice(0, eq))) return null
  // A list may hold empty elements and optional whitespace around commas (RFC 9110 §5.6.1).
  const specs = value.slice(eq + 1).split(',').map(s => s.trim()).filter(s => s !== '')
  if (specs.length !== 1) return null
  const m = RANGE_SPEC.exec(specs[0])
  if (m == null) return null
  const max = BigInt(size) - 1n
  if (m[3] != null) {
    // Suffix range: the last n bytes, all of them when n is at least the size.
    const n = BigInt(m[3])
    if (n === 0n) throw new RangeNotSatisfiableError(size)
    // Satisfiable by the letter of §14.1.2 but a zero-byte range has no Content-Range form.
    if (size === 0) return null
    return { start: n > BigInt(size) ? 0 : Number(BigInt(size) - n), end: size - 1 }
  }
  const first = BigInt(m[1])
  const last = m[2] === '' ? null : BigInt(m[2])
  // last < first makes the range invalid, and an invalid header is ignored, not refused.
  if (last != null && last < first) return null
  if (first > max) throw new RangeNotSatisfiableError(size)
  return { start: Number(first), end: Number(last == null || last > max ? max : last) }
}

/** The Content-Range value of a 206 response for [start, end] of `size` bytes. */
export function contentRangeHeader (start: number, end: number, size: number): string {
  assertSize(size)
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= size) {
    throw new RangeError(`[${start}, ${end}] is not a byte range of ${size} bytes`)
  }
  return `bytes ${start}-${end}/${size}`
}

/** The Content-Range value of a 416 response. */
export function unsatisfiedRangeHeader (size: number): string {
  assertSize(size)
  return `bytes */${size}`
}
