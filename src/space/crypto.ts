/**
 * End-to-end encryption for private spaces. Pure: no I/O; the primitives (X25519, HKDF,
 * ChaCha20-Poly1305) and randomness come through src/identity, so this file imports no `node:` module.
 *
 * Members of a private space share one 32-byte group key per epoch. The owner seals that key to
 * each member's identity key (the Ed25519 key its did:key names) in a signed key envelope; to
 * remove a member the owner starts a new epoch whose key is sealed only to those who remain, so
 * the removed member cannot read anything sent under it.
 *
 * Sealed box (anonymous, like libsodium's crypto_box_seal, built from parts Node has natively):
 *   version(1) ‖ ephemeralX25519Pub(32) ‖ ChaCha20-Poly1305(key, nonce = 0¹², aad = version ‖ aad)
 *   key = HKDF-SHA256(ikm = X25519(eph, recipientX), salt = ephPub ‖ recipientX, info = SEAL_INFO)
 * recipientX is the recipient's Ed25519 public key mapped to X25519 (the birational map, as
 * libsodium's crypto_sign_ed25519_pk_to_curve25519); the recipient uses sha512(seed)[0..32]. The
 * zero nonce is safe because every seal has a fresh ephemeral key, hence a fresh AEAD key.
 * All-zero (low-order) shared secrets are refused on both sides.
 *
 * Group message: version(1) ‖ epoch(u32 BE) ‖ nonce(12, random) ‖ ciphertext ‖ tag(16), with the
 * AEAD's associated data = version ‖ epoch ‖ caller's aad, so the header cannot be altered.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { ed25519 } from '@noble/curves/ed25519.js'
import { didFromPublicKey, isDid, publicKeyFromDid } from '../identity/did.ts'
import { ED25519_SEED_BYTES, type Ed25519Key } from '../identity/ed25519.ts'
import { InvalidKeyError } from '../identity/errors.ts'
import { signRecord, verifyRecordSync, type VerifiedRecord } from '../identity/record.ts'
import { randomBytes } from '../identity/hash.ts'
import { AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES, aeadOpen, aeadSeal, hkdfSha256, X25519_KEY_BYTES, x25519PublicKey, x25519SharedSecret } from '../identity/seal.ts'

/** Record type of a signed key envelope. */
export const SPACE_KEYS_TYPE = 'peerverse/space-keys'
/** HKDF info string of the sealed box (the `/1` is the construction's version). */
export const SEAL_INFO = 'peerverse/space-seal/1'
export const SEAL_VERSION = 1
export { X25519_KEY_BYTES, AEAD_TAG_BYTES }
/** Bytes a sealed box adds to its plaintext: version, ephemeral public key, tag. */
export const SEAL_OVERHEAD_BYTES = 1 + X25519_KEY_BYTES + AEAD_TAG_BYTES
/** Largest plaintext sealTo accepts (it is meant for keys and small secrets). */
export const MAX_SEAL_PLAINTEXT_BYTES = 64 * 1024

/** Size of a group key. */
export const GROUP_KEY_BYTES = 32
/** A sealed group key, as it appears in a key envelope. */
export const SEALED_GROUP_KEY_BYTES = GROUP_KEY_BYTES + SEAL_OVERHEAD_BYTES
/** Members one key envelope may name (one envelope per epoch keeps rekeying a single record). */
export const MAX_SPACE_MEMBERS = 1024
/** Largest encoded key envelope: about 141 bytes per member at MAX_SPACE_MEMBERS, plus headroom. */
export const MAX_KEY_ENVELOPE_BYTES = 160 * 1024
/** Longest space id a key envelope may carry. */
export const MAX_ENVELOPE_SPACE_LENGTH = 256
/** Epochs are u32 on the wire. */
export const MAX_EPOCH = 0xffff_ffff

export const GROUP_MESSAGE_VERSION = 1
/** version(1) ‖ epoch(4) ‖ nonce(12). */
export const GROUP_HEADER_BYTES = 1 + 4 + AEAD_NONCE_BYTES
/** Bytes a group message adds to its plaintext. */
export const GROUP_OVERHEAD_BYTES = GROUP_HEADER_BYTES + AEAD_TAG_BYTES
/** Largest plaintext of one group message (presence frames, chat, world updates). */
export const MAX_GROUP_PLAINTEXT_BYTES = 256 * 1024
/**
 * Messages (from all members together) one epoch key should encrypt before the owner rotates it.
 * Nonces are 96 random bits, so after n messages a collision has probability about n²/2⁹⁷: 2³²
 * messages give ≈ 2⁻³³, the bound NIST SP 800-38D sets for random nonces. A collision under
 * ChaCha20-Poly1305 leaks the XOR of two plaintexts and lets the key's holders forge, so rotate
 * well before it (100 members at 20 Hz send 2³² messages in about 25 days).
 */
export const MAX_MESSAGES_PER_EPOCH = 2 ** 32

export class SealOpenError extends Error {
  name = 'SealOpenError'
}

/** The recipient named cannot be sealed to (not an Ed25519 did:key, or a low-order key). */
export class InvalidRecipientError extends Error {
  name = 'InvalidRecipientError'
}

export class MalformedKeyEnvelopeError extends Error {
  name = 'MalformedKeyEnvelopeError'
}

export class EnvelopeOwnerMismatchError extends Error {
  name = 'EnvelopeOwnerMismatchError'
}

export class EnvelopeSpaceMismatchError extends Error {
  name = 'EnvelopeSpaceMismatchError'
}

export class NotAMemberError extends Error {
  name = 'NotAMemberError'
}

export class TooManyMembersError extends Error {
  name = 'TooManyMembersError'
}

export class UnknownEpochError extends Error {
  name = 'UnknownEpochError'
}

export class DecryptError extends Error {
  name = 'DecryptError'
}

/** Thrown for bad arguments from our own side (wrong key size, epoch out of range, too large). */
export class InvalidSpaceCryptoInputError extends Error {
  name = 'InvalidSpaceCryptoInputError'
}

export interface KeyEnvelopePayload {
  space: string
  epoch: number
  /** did:key of each member → the group key sealed to it. */
  sealed: Record<string, Uint8Array>
}

export interface OpenedKeyEnvelope {
  epoch: number
  groupKey: Uint8Array
}

export interface DecryptedGroupMessage {
  epoch: number
  plaintext: Uint8Array
}

const SEAL_INFO_BYTES = new TextEncoder().encode(SEAL_INFO)
const ZERO_NONCE = new Uint8Array(AEAD_NONCE_BYTES)
const EMPTY = new Uint8Array(0)

function checkBytes (value: unknown, what: string, length?: number, max?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidSpaceCryptoInputError(`${what} must be a Uint8Array`)
  if (length != null && value.length !== length) throw new InvalidSpaceCryptoInputError(`${what} must be ${length} bytes`)
  if (max != null && value.length > max) throw new InvalidSpaceCryptoInputError(`${what} is ${value.length} bytes, over ${max}`)
}

function checkEpoch (epoch: unknown): asserts epoch is number {
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 0 || (epoch as number) > MAX_EPOCH) {
    throw new InvalidSpaceCryptoInputError(`epoch must be an integer in 0..${MAX_EPOCH}`)
  }
}

function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const X25519_CACHE_SIZE = 1024
const x25519PublicCache = new Map<string, Uint8Array>()

/** The X25519 public key of the Ed25519 key a did:key names; throws InvalidRecipientError. */
export function x25519PublicKeyFromDid (did: string): Uint8Array {
  return Uint8Array.from(recipientX25519(did))
}

/** x25519PublicKeyFromDid, cached (the map costs about 0.25 ms); callers must not mutate the result. */
function recipientX25519 (did: string): Uint8Array {
  const cached = x25519PublicCache.get(did)
  if (cached != null) return cached
  let edPub: Uint8Array
  try {
    edPub = publicKeyFromDid(did)
  } catch (err) {
    throw new InvalidRecipientError((err as Error).message)
  }
  let x: Uint8Array
  try {
    x = ed25519.utils.toMontgomery(edPub)
  } catch (err) {
    throw new InvalidRecipientError(`not a point on Ed25519: ${(err as Error).message}`)
  }
  if (x.every(b => b === 0)) throw new InvalidRecipientError('Ed25519 key maps to a low-order X25519 key')
  if (x25519PublicCache.size >= X25519_CACHE_SIZE) x25519PublicCache.delete(x25519PublicCache.keys().next().value as string)
  x25519PublicCache.set(did, x)
  return x
}

/** The X25519 secret for an Ed25519 key (sha512(seed)[0..32]; X25519 clamps it). */
export function x25519SecretFromEd25519 (key: Ed25519Key): Uint8Array {
  checkBytes(key?.seed, 'Ed25519 seed', ED25519_SEED_BYTES)
  return ed25519.utils.toMontgomerySecret(key.seed)
}

function sealKey (shared: Uint8Array, ephPub: Uint8Array, recipientPub: Uint8Array): Uint8Array {
  return hkdfSha256(shared, concat(ephPub, recipientPub), SEAL_INFO_BYTES, AEAD_KEY_BYTES)
}

/**
 * Seals plaintext so only the holder of recipientDid's key can open it; the sender stays anonymous.
 * `aad` (optional) is bound to the box and must be given again to open it.
 * Throws InvalidRecipientError or InvalidSpaceCryptoInputError.
 */
export function sealTo (recipientDid: string, plaintext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
  checkBytes(plaintext, 'plaintext', undefined, MAX_SEAL_PLAINTEXT_BYTES)
  checkBytes(aad, 'aad')
  const recipientPub = recipientX25519(recipientDid)
  const eph = randomBytes(X25519_KEY_BYTES)
  const shared = x25519SharedSecret(eph, recipientPub)
  if (shared == null) throw new InvalidRecipientError('low-order recipient key')
  const ephPub = x25519PublicKey(eph)
  const version = Uint8Array.of(SEAL_VERSION)
  const body = aeadSeal(sealKey(shared, ephPub, recipientPub), ZERO_NONCE, plaintext, concat(version, aad))
  return concat(version, ephPub, body)
}

/** Opens a box sealed to `key`'s owner. Throws SealOpenError for anything that does not open. */
export function openSealed (key: Ed25519Key, sealed: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
  checkBytes(aad, 'aad')
  if (!(sealed instanceof Uint8Array) || sealed.length < SEAL_OVERHEAD_BYTES) throw new SealOpenError('sealed box is too short')
  if (sealed.length > MAX_SEAL_PLAINTEXT_BYTES + SEAL_OVERHEAD_BYTES) throw new SealOpenError('sealed box is too large')
  if (sealed[0] !== SEAL_VERSION) throw new SealOpenError(`unknown sealed box version ${sealed[0]}`)
  const ephPub = sealed.subarray(1, 1 + X25519_KEY_BYTES)
  const me = x25519SecretFromEd25519(key)
  const shared = x25519SharedSecret(me, ephPub)
  if (shared == null) throw new SealOpenError('low-order ephemeral key')
  const plaintext = aeadOpen(sealKey(shared, ephPub, x25519PublicKey(me)), ZERO_NONCE, sealed.subarray(1 + X25519_KEY_BYTES), concat(sealed.subarray(0, 1), aad))
  if (plaintext == null) throw new SealOpenError('sealed box does not open with this key')
  return plaintext
}

/** A fresh random group key. */
export function generateGroupKey (): Uint8Array {
  return new Uint8Array(randomBytes(GROUP_KEY_BYTES))
}

/** Binds a sealed group key to its space and epoch, so it cannot be moved into another envelope. */
function envelopeAad (space: string, epoch: number): Uint8Array {
  return dagCbor.encode([SPACE_KEYS_TYPE, space, epoch])
}

function checkSpace (space: unknown): asserts space is string {
  if (typeof space !== 'string' || space.length === 0 || space.length > MAX_ENVELOPE_SPACE_LENGTH) {
    throw new InvalidSpaceCryptoInputError(`space must be a string of 1..${MAX_ENVELOPE_SPACE_LENGTH} characters`)
  }
}

/**
 * The owner's signed record giving `groupKey` for `epoch` of `space` to each member (duplicates
 * ignored). The owner is a reader only if listed. Throws TooManyMembersError,
 * InvalidRecipientError or InvalidSpaceCryptoInputError.
 */
export async function createKeyEnvelope (owner: Ed25519Key, space: string, epoch: number, groupKey: Uint8Array, members: string[]): Promise<VerifiedRecord<KeyEnvelopePayload>> {
  checkSpace(space)
  checkEpoch(epoch)
  checkBytes(groupKey, 'group key', GROUP_KEY_BYTES)
  if (!Array.isArray(members)) throw new InvalidSpaceCryptoInputError('members must be an array of did:key')
  const unique = [...new Set(members)]
  if (unique.length > MAX_SPACE_MEMBERS) throw new TooManyMembersError(`${unique.length} members, over ${MAX_SPACE_MEMBERS}`)
  const aad = envelopeAad(space, epoch)
  const sealed: Record<string, Uint8Array> = {}
  for (const did of unique) {
    if (!isDid(did)) throw new InvalidRecipientError(`not an Ed25519 did:key: ${String(did).slice(0, 80)}`)
    sealed[did] = sealTo(did, groupKey, aad)
  }
  return await signRecord<KeyEnvelopePayload>(owner, SPACE_KEYS_TYPE, { space, epoch, sealed })
}

/**
 * Verifies a key envelope from anywhere and opens my group key from it. Throws the identity
 * record errors (bad signature, encoding, size), EnvelopeOwnerMismatchError,
 * EnvelopeSpaceMismatchError, MalformedKeyEnvelopeError, NotAMemberError or SealOpenError.
 */
export function openKeyEnvelope (me: Ed25519Key, myDid: string, recordBytes: Uint8Array, expectedOwnerDid: string, expectedSpace: string): OpenedKeyEnvelope {
  if (me == null || didFromPublicKey(me.publicKey) !== myDid) throw new InvalidKeyError('myDid does not name this key')
  const payload = verifyKeyEnvelope(recordBytes, expectedOwnerDid, expectedSpace)
  if (!Object.hasOwn(payload.sealed, myDid)) throw new NotAMemberError(`${myDid} is not a member in epoch ${payload.epoch}`)
  const groupKey = openSealed(me, payload.sealed[myDid], envelopeAad(payload.space, payload.epoch))
  if (groupKey.length !== GROUP_KEY_BYTES) throw new MalformedKeyEnvelopeError('sealed group key has the wrong length')
  return { epoch: payload.epoch, groupKey }
}

/** Checks a key envelope's signature, owner, space and shape; returns its payload (opens nothing). */
export function verifyKeyEnvelope (recordBytes: Uint8Array, expectedOwnerDid: string, expectedSpace: string): KeyEnvelopePayload {
  const { record } = verifyRecordSync<unknown>(recordBytes, { type: SPACE_KEYS_TYPE, maxBytes: MAX_KEY_ENVELOPE_BYTES })
  if (record.author !== expectedOwnerDid) throw new EnvelopeOwnerMismatchError(`envelope is signed by ${record.author}, not the space owner`)
  const p = record.payload
  if (p == null || typeof p !== 'object' || Array.isArray(p) || p instanceof Uint8Array) throw new MalformedKeyEnvelopeError('payload must be a map')
  const { space, epoch, sealed } = p as Record<string, unknown>
  if (Object.keys(p).length !== 3) throw new MalformedKeyEnvelopeError('payload must have exactly space, epoch and sealed')
  if (typeof space !== 'string' || space.length === 0 || space.length > MAX_ENVELOPE_SPACE_LENGTH) throw new MalformedKeyEnvelopeError('bad space')
  if (space !== expectedSpace) throw new EnvelopeSpaceMismatchError(`envelope is for space ${space.slice(0, 80)}`)
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 0 || (epoch as number) > MAX_EPOCH) throw new MalformedKeyEnvelopeError('bad epoch')
  if (sealed == null || typeof sealed !== 'object' || Array.isArray(sealed) || sealed instanceof Uint8Array) throw new MalformedKeyEnvelopeError('sealed must be a map')
  const entries = Object.entries(sealed)
  if (entries.length > MAX_SPACE_MEMBERS) throw new MalformedKeyEnvelopeError(`${entries.length} members, over ${MAX_SPACE_MEMBERS}`)
  for (const [did, box] of entries) {
    if (!isDid(did)) throw new MalformedKeyEnvelopeError('sealed is keyed by something other than a did:key')
    if (!(box instanceof Uint8Array) || box.length !== SEALED_GROUP_KEY_BYTES) throw new MalformedKeyEnvelopeError('a sealed group key has the wrong size')
  }
  return { space, epoch: epoch as number, sealed: sealed as Record<string, Uint8Array> }
}

function header (epoch: number): Uint8Array {
  const h = new Uint8Array(5)
  h[0] = GROUP_MESSAGE_VERSION
  new DataView(h.buffer).setUint32(1, epoch)
  return h
}

/**
 * Encrypts one group message under the epoch's key with a random nonce. `aad` (e.g. space id and
 * channel) is authenticated, not sent. See MAX_MESSAGES_PER_EPOCH for when to rotate.
 */
export function encryptGroup (groupKey: Uint8Array, epoch: number, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  checkBytes(groupKey, 'group key', GROUP_KEY_BYTES)
  checkEpoch(epoch)
  checkBytes(plaintext, 'plaintext', undefined, MAX_GROUP_PLAINTEXT_BYTES)
  checkBytes(aad, 'aad')
  const h = header(epoch)
  const nonce = randomBytes(AEAD_NONCE_BYTES)
  return concat(h, nonce, aeadSeal(groupKey, nonce, plaintext, concat(h, aad)))
}

/**
 * Decrypts a group message, looking its epoch's key up with `keys`. Throws UnknownEpochError when
 * `keys` has none, DecryptError for anything malformed, too large, tampered or under a wrong key.
 */
export function decryptGroup (keys: (epoch: number) => Uint8Array | undefined, bytes: Uint8Array, aad: Uint8Array): DecryptedGroupMessage {
  checkBytes(aad, 'aad')
  if (!(bytes instanceof Uint8Array) || bytes.length < GROUP_OVERHEAD_BYTES) throw new DecryptError('group message is too short')
  if (bytes.length > MAX_GROUP_PLAINTEXT_BYTES + GROUP_OVERHEAD_BYTES) throw new DecryptError('group message is too large')
  if (bytes[0] !== GROUP_MESSAGE_VERSION) throw new DecryptError(`unknown group message version ${bytes[0]}`)
  const epoch = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1)
  const key = keys(epoch)
  if (key == null) throw new UnknownEpochError(`no key for epoch ${epoch}`)
  if (!(key instanceof Uint8Array) || key.length !== GROUP_KEY_BYTES) throw new DecryptError(`key for epoch ${epoch} is not ${GROUP_KEY_BYTES} bytes`)
  const nonce = bytes.subarray(5, GROUP_HEADER_BYTES)
  const plaintext = aeadOpen(key, nonce, bytes.subarray(GROUP_HEADER_BYTES), concat(bytes.subarray(0, 5), aad))
  if (plaintext == null) throw new DecryptError('group message does not authenticate')
  return { epoch, plaintext }
}
