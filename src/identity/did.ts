/**
 * did:key for Ed25519 keys: `did:key:z` + base58btc(multicodec ed25519-pub 0xed01 || key).
 * The open name of a user, readable by any did:key resolver.
 */
import { base58btc } from 'multiformats/bases/base58'
import { InvalidDidError } from './errors.ts'
import { ED25519_PUBLIC_KEY_BYTES } from './ed25519.ts'

const DID_KEY_PREFIX = 'did:key:'
const ED25519_PUB_MULTICODEC = Uint8Array.of(0xed, 0x01)
/** Longest did:key string we parse; an Ed25519 did:key is 56 characters. */
export const MAX_DID_LENGTH = 128

/** Names an Ed25519 public key as a did:key. */
export function didFromPublicKey (publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    throw new InvalidDidError('an Ed25519 public key is 32 bytes')
  }
  const bytes = new Uint8Array(2 + publicKey.length)
  bytes.set(ED25519_PUB_MULTICODEC)
  bytes.set(publicKey, 2)
  return DID_KEY_PREFIX + base58btc.encode(bytes)
}

/** did:keys whose public key is remembered (base58 decoding costs as much as a tenth of a signature check). */
export const DID_KEY_CACHE_SIZE = 4096
const didKeys = new Map<string, Uint8Array>()

/** Returns the Ed25519 public key a did:key names, or throws InvalidDidError. */
export function publicKeyFromDid (did: unknown): Uint8Array {
  if (typeof did !== 'string' || did.length > MAX_DID_LENGTH || !did.startsWith(DID_KEY_PREFIX + 'z')) {
    throw new InvalidDidError('not a did:key with a base58btc identifier')
  }
  const known = didKeys.get(did)
  // A copy: callers own what they get.
  if (known != null) return known.slice()
  const key = decodeDidKey(did)
  if (didKeys.size >= DID_KEY_CACHE_SIZE) didKeys.delete(didKeys.keys().next().value as string)
  didKeys.set(did, key)
  return key.slice()
}

function decodeDidKey (did: string): Uint8Array {
  let bytes: Uint8Array
  try {
    bytes = base58btc.decode(did.slice(DID_KEY_PREFIX.length))
  } catch {
    throw new InvalidDidError('did:key identifier is not valid base58btc')
  }
  if (bytes.length !== 2 + ED25519_PUBLIC_KEY_BYTES || bytes[0] !== 0xed || bytes[1] !== 0x01) {
    throw new InvalidDidError('did:key does not name an Ed25519 public key')
  }
  return bytes.slice(2)
}

/** True when the value is a well-formed Ed25519 did:key. */
export function isDid (did: unknown): did is string {
  if (typeof did === 'string' && didKeys.has(did)) return true
  try {
    publicKeyFromDid(did)
    return true
  } catch {
    return false
  }
}
