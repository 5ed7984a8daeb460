/**
 * hash.ts for the browser bundle (vite.config.ts maps one to the other): the same functions on
 * @noble/hashes and the Web Crypto random source, with no `node:` import and no Buffer.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'

const utf8 = new TextEncoder()

/** SHA-256 of the parts, in order, as if concatenated (strings as UTF-8). */
export function sha256 (...parts: Array<Uint8Array | string>): Uint8Array {
  const h = nobleSha256.create()
  for (const p of parts) h.update(typeof p === 'string' ? utf8.encode(p) : p)
  return h.digest()
}

/** SHA-256 of the parts as lowercase hex. */
export function sha256Hex (...parts: Array<Uint8Array | string>): string {
  return bytesToHex(sha256(...parts))
}

/** `n` bytes from the system's secure random source. */
export function randomBytes (n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n))
}

function base64Std (bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += String.fromCharCode(b)
  return btoa(s)
}

/** Bytes as unpadded base64url. */
export function base64url (bytes: Uint8Array): string {
  return base64Std(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** Bytes as lowercase hex. */
export function toHex (bytes: Uint8Array): string {
  return bytesToHex(bytes)
}

/** Bytes as padded standard base64. */
export function base64 (bytes: Uint8Array): string {
  return base64Std(bytes)
}
