/**
 * ed25519.ts for the browser bundle (vite.config.ts maps one to the other): the same functions on
 * @noble/curves, with no `node:` import. Keys travel as raw bytes, as on Node.
 */
import { ed25519 } from '@noble/curves/ed25519.js'
import { InvalidKeyError } from './errors.ts'

export const ED25519_SEED_BYTES = 32
export const ED25519_PUBLIC_KEY_BYTES = 32
export const ED25519_SIGNATURE_BYTES = 64

/** An Ed25519 signing key: the seed and its public key. */
export interface Ed25519Key {
  readonly seed: Uint8Array
  readonly publicKey: Uint8Array
}

function checkBytes (value: unknown, length: number, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) throw new InvalidKeyError(`${what} must be ${length} bytes`)
}

/** Generates a fresh key pair from the system's CSPRNG. */
export function generateEd25519Key (): Ed25519Key {
  return ed25519KeyFromSeed(crypto.getRandomValues(new Uint8Array(ED25519_SEED_BYTES)))
}

/** Rebuilds a key pair from its 32-byte seed (RFC 8032 "secret key"). */
export function ed25519KeyFromSeed (seed: Uint8Array): Ed25519Key {
  checkBytes(seed, ED25519_SEED_BYTES, 'Ed25519 seed')
  return { seed: Uint8Array.from(seed), publicKey: ed25519.getPublicKey(seed) }
}

/** Signs a message (pure Ed25519, no prehash). */
export function ed25519Sign (key: Ed25519Key, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, key.seed)
}

/** Verifies a signature; false for any bad signature, throws InvalidKeyError for a malformed key. */
export function ed25519Verify (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  checkBytes(publicKey, ED25519_PUBLIC_KEY_BYTES, 'Ed25519 public key')
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES) return false
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false })
  } catch (err) {
    throw new InvalidKeyError(`not a valid Ed25519 public key: ${(err as Error).message}`)
  }
}
