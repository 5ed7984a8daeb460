/**
 * Byte helpers the tests share: unsigned varints (the length prefix of our frames), joining
 * buffers, UTF-8 and hex. Plain `Uint8Array`s in and out, so `assert.deepEqual` compares them
 * with what the code under test returns.
 */

/** The unsigned-varint (LEB128) encoding of `n`, a non-negative safe integer. */
export function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}

/** Reads an unsigned varint (up to 8 bytes) at the start of `buf`: its value and how many bytes it took. */
export function readVarint (buf: Uint8Array): { value: number, length: number } {
  let value = 0
  for (let i = 0, scale = 1; i < buf.length && i < 8; i++, scale *= 0x80) {
    value += (buf[i] & 0x7f) * scale
    if (buf[i] < 0x80) return { value, length: i + 1 }
  }
  throw new Error('no varint')
}

/** The parts, one after another, in a new buffer. */
export function cat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

/** The UTF-8 bytes of `s`. */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

/** Lower-case hex of `b`. */
export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** The bytes a hex string spells. */
export const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
