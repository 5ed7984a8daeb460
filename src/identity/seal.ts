/**
 * The primitives sealed messages are built from: X25519 key agreement, HKDF-SHA256 and the
 * ChaCha20-Poly1305 AEAD. They live here, behind the identity boundary, so that the capabilities
 * (a private space's key envelopes and group messages) import no `node:` module themselves; on
 * Node they are node:crypto's, which are native. Raw bytes in and out: a browser build can put
 * @noble's implementations behind the same functions with the same bytes on the wire.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from 'node:crypto'

export const X25519_KEY_BYTES = 32
export const AEAD_KEY_BYTES = 32
export const AEAD_NONCE_BYTES = 12
export const AEAD_TAG_BYTES = 16

// DER prefixes for raw X25519 keys (RFC 8410).
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

function x25519Private (secret: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' })
}

/** The X25519 public key of a 32-byte secret (clamped as X25519 does). */
export function x25519PublicKey (secret: Uint8Array): Uint8Array {
  return new Uint8Array(createPublicKey(x25519Private(secret)).export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length))
}

/** X25519(secret, publicKey), or undefined when the result is all zero (a low-order public key) or the key is refused. */
export function x25519SharedSecret (secret: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined {
  let shared: Uint8Array
  try {
    const pub = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    shared = new Uint8Array(diffieHellman({ privateKey: x25519Private(secret), publicKey: pub }))
  } catch {
    return undefined // OpenSSL refuses an all-zero result ("failed during derivation")
  }
  let acc = 0
  for (const b of shared) acc |= b
  return acc === 0 ? undefined : shared
}

/** HKDF-SHA256 (RFC 5869) of `length` bytes. */
export function hkdfSha256 (ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length))
}

/** ChaCha20-Poly1305 (RFC 8439): ciphertext ‖ tag. */
export function aeadSeal (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES })
  cipher.setAAD(aad, { plaintextLength: plaintext.length })
  const body = cipher.update(plaintext)
  cipher.final()
  const tag = cipher.getAuthTag()
  const out = new Uint8Array(body.length + tag.length)
  out.set(body, 0)
  out.set(tag, body.length)
  return out
}

/** Opens ciphertext ‖ tag, or returns undefined when authentication fails. */
export function aeadOpen (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | undefined {
  if (sealed.length < AEAD_TAG_BYTES) return undefined
  const body = sealed.subarray(0, sealed.length - AEAD_TAG_BYTES)
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES })
  decipher.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_BYTES))
  decipher.setAAD(aad, { plaintextLength: body.length })
  const plaintext = decipher.update(body)
  try {
    decipher.final()
  } catch {
    return undefined
  }
  return new Uint8Array(plaintext)
}
