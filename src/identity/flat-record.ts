/**
 * A fast path for decoding the commonest signed records: a record envelope whose payload is one
 * flat map of ASCII text, unsigned integers and byte strings (a ledger transfer, say). It reads
 * only the canonical DAG-CBOR encoding (shortest heads, keys in length-then-bytewise order, no
 * duplicates, definite lengths, nothing trailing) and returns what @ipld/dag-cbor's decoder would
 * return for those bytes, so a record it accepts needs no re-encoding to prove its encoding
 * canonical. Anything else (nested values, lists, CIDs, negative numbers, floats, non-ASCII text,
 * any irregularity) gives undefined, and the caller takes the general path, which decides and
 * names the error. Saves a DAG-CBOR decode and encode per record, a tenth of a signature check.
 */

/** Map entries a flat payload may have at most on the fast path. */
const MAX_FLAT_ENTRIES = 32

/** The envelope's keys in canonical order (length first, then bytewise). */
const ENVELOPE_KEYS = ['v', 'sig', 'type', 'author', 'payload'] as const

class Reader {
  pos = 0
  readonly bytes: Uint8Array
  constructor (bytes: Uint8Array) { this.bytes = bytes }

  /** A head's major type and argument, or undefined when not in shortest form or not supported. */
  head (): { major: number, value: number | bigint } | undefined {
    const b = this.bytes
    if (this.pos >= b.length) return undefined
    const first = b[this.pos++]
    const major = first >> 5
    const info = first & 0x1f
    if (info < 24) return { major, value: info }
    if (info === 24) {
      if (this.pos + 1 > b.length) return undefined
      const v = b[this.pos++]
      return v < 24 ? undefined : { major, value: v }
    }
    if (info === 25) {
      if (this.pos + 2 > b.length) return undefined
      const v = (b[this.pos] << 8) | b[this.pos + 1]
      this.pos += 2
      return v < 0x100 ? undefined : { major, value: v }
    }
    if (info === 26) {
      if (this.pos + 4 > b.length) return undefined
      const v = ((b[this.pos] << 24) >>> 0) + ((b[this.pos + 1] << 16) | (b[this.pos + 2] << 8) | b[this.pos + 3])
      this.pos += 4
      return v < 0x10000 ? undefined : { major, value: v }
    }
    if (info === 27) {
      if (this.pos + 8 > b.length) return undefined
      let v = 0n
      for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(b[this.pos + i])
      this.pos += 8
      if (v < 0x100000000n) return undefined
      return { major, value: v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v }
    }
    return undefined
  }

  /** A length argument small enough to index with, else undefined. */
  length (major: number): number | undefined {
    const h = this.head()
    if (h == null || h.major !== major || typeof h.value !== 'number') return undefined
    return h.value
  }

  /** An ASCII text string, else undefined. */
  text (): string | undefined {
    const n = this.length(3)
    if (n == null || this.pos + n > this.bytes.length) return undefined
    let s = ''
    for (let i = this.pos; i < this.pos + n; i++) {
      const c = this.bytes[i]
      if (c >= 0x80) return undefined
      s += String.fromCharCode(c)
    }
    this.pos += n
    return s
  }

  /** A byte string (a copy, as the DAG-CBOR decoder gives), else undefined. */
  byteString (): Uint8Array | undefined {
    const n = this.length(2)
    if (n == null || this.pos + n > this.bytes.length) return undefined
    // A plain Uint8Array even when the input is a Buffer, as the DAG-CBOR decoder gives.
    const out = new Uint8Array(n)
    out.set(this.bytes.subarray(this.pos, this.pos + n))
    this.pos += n
    return out
  }

  /** A text, unsigned integer or byte string value, else undefined. */
  flatValue (): string | number | bigint | Uint8Array | undefined {
    if (this.pos >= this.bytes.length) return undefined
    const major = this.bytes[this.pos] >> 5
    if (major === 3) return this.text()
    if (major === 2) return this.byteString()
    if (major === 0) return this.head()?.value
    return undefined
  }

  /** A map of flat values with text keys in canonical order, else undefined. */
  flatMap (): Record<string, unknown> | undefined {
    const n = this.length(5)
    if (n == null || n > MAX_FLAT_ENTRIES) return undefined
    const out: Record<string, unknown> = {}
    let last: string | undefined
    for (let i = 0; i < n; i++) {
      const key = this.text()
      if (key == null || (last != null && !keyAfter(key, last))) return undefined
      // Assigning it would set the object's prototype: leave it to the general path.
      if (key === '__proto__') return undefined
      const value = this.flatValue()
      if (value === undefined) return undefined
      out[key] = value
      last = key
    }
    return out
  }
}

/** DAG-CBOR's key order for ASCII keys: shorter first, then bytewise. Strict: equal is not after. */
function keyAfter (key: string, prev: string): boolean {
  if (key.length !== prev.length) return key.length > prev.length
  return key > prev
}

/**
 * The record { v, sig, type, author, payload } in `bytes` when they are its canonical encoding
 * with a flat payload (see above), else undefined. The result equals @ipld/dag-cbor's decode.
 */
export function decodeFlatRecord (bytes: Uint8Array): Record<string, unknown> | undefined {
  const r = new Reader(bytes)
  if (r.length(5) !== ENVELOPE_KEYS.length) return undefined
  const out: Record<string, unknown> = {}
  for (const key of ENVELOPE_KEYS) {
    if (r.text() !== key) return undefined
    let value: unknown
    switch (key) {
      case 'v': { const h = r.head(); value = h?.major === 0 ? h.value : undefined; break }
      case 'sig': value = r.byteString(); break
      case 'type': case 'author': value = r.text(); break
      case 'payload': value = r.flatMap(); break
    }
    if (value === undefined) return undefined
    out[key] = value
  }
  return r.pos === bytes.length ? out : undefined
}
