/**
 * Ed25519 on Node's native crypto (several times faster than a JS implementation). Node-only
 * (node:crypto): a browser peer supplies this file's functions from @noble/curves.
 * Keys travel as raw bytes (32-byte seed, 32-byte public key); KeyObjects are built at the edge.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { InvalidKeyError } from './errors.ts'

export const ED25519_SEED_BYTES = 32
export const ED25519_PUBLIC_KEY_BYTES = 32
export const ED25519_SIGNATURE_BYTES = 64

// DER prefixes for raw Ed25519 keys (RFC 8410).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** An Ed25519 signing key: the seed, its public key, and the KeyObject used to sign. */
export interface Ed25519Key {
  readonly seed: Uint8Array
  readonly publicKey: Uint8Array
  readonly keyObject: KeyObject
}

function checkBytes (value: unknown, length: number, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new InvalidKeyError(`${what} must be ${length} bytes`)
  }
}

/** Generates a fresh key pair from the system's CSPRNG. */
export function generateEd25519Key (): Ed25519Key {
  const { privateKey } = generateKeyPairSync('ed25519')
  const der = privateKey.export({ format: 'der', type: 'pkcs8' })
  return ed25519KeyFromSeed(new Uint8Array(der.subarray(der.length - ED25519_SEED_BYTES)))
}

/** Rebuilds a key pair from its 32-byte seed (RFC 8032 "secret key"). */
export function ed25519KeyFromSeed (seed: Uint8Array): Ed25519Key {
  checkBytes(seed, ED25519_SEED_BYTES, 'Ed25519 seed')
  const keyObject = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(keyObject).export({ format: 'der', type: 'spki' })
  return { seed: Uint8Array.from(seed), publicKey: new Uint8Array(spki.subarray(SPKI_PREFIX.length)), keyObject }
}

/** Signs a message (pure Ed25519, no prehash). */
export function ed25519Sign (key: Ed25519Key, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, key.keyObject))
}

const PUBLIC_KEY_CACHE_SIZE = 1024
const publicKeyCache = new Map<string, KeyObject>()

function publicKeyObject (publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey).toString('base64')
  let key = publicKeyCache.get(id)
  if (key == null) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_SIZE) {
      publicKeyCache.delete(publicKeyCache.keys().next().value as string)
    }
    publicKeyCache.set(id, key)
  }
  return key
}

/** Verifies a signature; false for any bad signature, throws InvalidKeyError for a malformed key. */
export function ed25519Verify (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  checkBytes(publicKey, ED25519_PUBLIC_KEY_BYTES, 'Ed25519 public key')
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES) return false
  let key: KeyObject
  try {
    key = publicKeyObject(publicKey)
  } catch (err) {
    throw new InvalidKeyError(`not a valid Ed25519 public key: ${(err as Error).message}`)
  }
  return verify(null, message, key, signature)
}
