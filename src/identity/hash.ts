/**
 * Hashing and randomness for the capabilities, so that they import no `node:` module themselves
 * (the boundary a browser peer needs). On Node these are node:crypto's, which are native and fast.
 */
import { createHash, randomBytes as nodeRandomBytes } from 'node:crypto'

/** SHA-256 of the parts, in order, as if concatenated (strings as UTF-8). */
export function sha256 (...parts: Array<Uint8Array | string>): Uint8Array {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** SHA-256 of the parts as lowercase hex. */
export function sha256Hex (...parts: Array<Uint8Array | string>): string {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

/** `n` bytes from the system's secure random source. */
export function randomBytes (n: number): Uint8Array {
  return nodeRandomBytes(n)
}

/** Bytes as unpadded base64url. */
export function base64url (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')
}

/** Bytes as lowercase hex. */
export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Bytes as padded standard base64. */
export function base64 (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}
