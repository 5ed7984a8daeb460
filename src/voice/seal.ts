/**
 * Sealing voice and video in a private space. A speaker sends 50 audio frames a second (and a
 * sharer up to VIDEO_CHUNKS_PER_SECOND chunks): sealed as group messages, under the epoch key
 * with random 96-bit nonces, they would spend the budget MAX_MESSAGES_PER_EPOCH sets for all the
 * members' messages together (nonce collisions under ChaCha20-Poly1305 leak plaintexts and allow
 * forgery) in days, and a member cannot rotate the epoch: only the owner can.
 *
 * So each sender seals under its own key, derived from the epoch key:
 *   key = HKDF-SHA256(ikm = groupKey(epoch), salt = a random 16-byte salt, info = VOICE_KEY_INFO ‖ 0 ‖ space ‖ 0 ‖ did)
 * and a counter as the nonce (4 zero bytes ‖ counter u64 BE), so nonces never repeat under a key
 * and no collision bound applies: a key seals at most MAX_SEALS_PER_VOICE_KEY messages, then the
 * sender draws a new salt (a new key) by itself. The salt is drawn at random per sending key, so a
 * restarted sender (its counter back at 0) seals under a new key; two salts collide with chance
 * 2⁻¹²⁸ per pair. A new epoch (a member removed) takes a new key at once, since the key is derived
 * from the epoch's; voice then spends no group message at all. Members can derive each other's
 * keys (as they can read each other's group messages): the key protects from non-members only.
 *
 * Sealed: version(1) ‖ epoch(u32 BE) ‖ salt(16) ‖ counter(u64 BE) ‖ ciphertext ‖ tag(16); the AEAD's
 * associated data is that header ‖ the caller's aad (space, did, seq), so none of it can be moved.
 */
import { hkdfSha256, aeadOpen, aeadSeal, AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES } from '../identity/seal.ts'
import { randomBytes, toHex } from '../identity/hash.ts'

/** The version byte of a sealed voice payload. */
export const VOICE_SEAL_VERSION = 1
/** HKDF info of a sender's key (the `/1` is the construction's version). */
export const VOICE_KEY_INFO = 'peerverse/voice-key/1'
export const VOICE_SALT_BYTES = 16
/** version(1) ‖ epoch(4) ‖ salt(16) ‖ counter(8). */
export const VOICE_SEAL_HEADER_BYTES = 1 + 4 + VOICE_SALT_BYTES + 8
/** Bytes sealing adds to a payload. */
export const VOICE_SEAL_OVERHEAD_BYTES = VOICE_SEAL_HEADER_BYTES + AEAD_TAG_BYTES
/** Messages one sending key seals before the sender draws a new salt (counters stay exact in a double). */
export const MAX_SEALS_PER_VOICE_KEY = 2 ** 32
/** Senders' keys a receiver keeps derived at once (per space, did, epoch and salt); past it the oldest goes. */
export const MAX_VOICE_KEYS_CACHED = 256

/** The group keys a space holds: the current epoch's, and any held by epoch. */
export interface GroupKeys {
  epoch: () => number
  key: (epoch: number) => Uint8Array | undefined
}

/** A sealed payload that does not open (malformed, unknown epoch, wrong key, tampered). */
export class VoiceOpenError extends Error { name = 'VoiceOpenError' }
/** No group key to seal under (not a member of the private space). */
export class VoiceSealError extends Error { name = 'VoiceSealError' }

const enc = new TextEncoder()

function deriveKey (groupKey: Uint8Array, salt: Uint8Array, space: string, did: string): Uint8Array {
  const info = enc.encode(`${VOICE_KEY_INFO}\0${space}\0${did}`)
  return hkdfSha256(groupKey, salt, info, AEAD_KEY_BYTES)
}

function nonceOf (counter: number): Uint8Array {
  const n = new Uint8Array(AEAD_NONCE_BYTES)
  new DataView(n.buffer).setBigUint64(4, BigInt(counter))
  return n
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

interface Sending { epoch: number, salt: Uint8Array, key: Uint8Array, counter: number }

/** Our sending keys (one per space) and the senders' keys we derived to open their payloads. */
export class VoiceSeal {
  private readonly sending = new Map<string, Sending>()
  private readonly opening = new Map<string, Uint8Array>()
  private readonly maxSeals: number

  /** `maxSeals` lowers MAX_SEALS_PER_VOICE_KEY (tests only). */
  constructor (maxSeals = MAX_SEALS_PER_VOICE_KEY) {
    this.maxSeals = maxSeals
  }

  /** Seals `plaintext` of ours (`did`) in `space`; VoiceSealError without a group key. */
  seal (space: string, did: string, keys: GroupKeys, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const epoch = keys.epoch()
    let s = this.sending.get(space)
    if (s == null || s.epoch !== epoch || s.counter >= this.maxSeals) {
      const groupKey = keys.key(epoch)
      if (groupKey == null) throw new VoiceSealError(`no group key of ${space}`)
      const salt = randomBytes(VOICE_SALT_BYTES)
      s = { epoch, salt, key: deriveKey(groupKey, salt, space, did), counter: 0 }
      this.sending.set(space, s)
    }
    const counter = s.counter++
    const header = new Uint8Array(VOICE_SEAL_HEADER_BYTES)
    const v = new DataView(header.buffer)
    header[0] = VOICE_SEAL_VERSION
    v.setUint32(1, epoch)
    header.set(s.salt, 5)
    v.setBigUint64(5 + VOICE_SALT_BYTES, BigInt(counter))
    return concat(header, aeadSeal(s.key, nonceOf(counter), plaintext, concat(header, aad)))
  }

  /** Opens a payload `did` sealed in `space`; VoiceOpenError when it does not. */
  open (space: string, did: string, keys: GroupKeys, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
    if (!(sealed instanceof Uint8Array) || sealed.length < VOICE_SEAL_OVERHEAD_BYTES) throw new VoiceOpenError('a sealed voice payload cut short')
    if (sealed[0] !== VOICE_SEAL_VERSION) throw new VoiceOpenError(`unknown voice seal version ${sealed[0]}`)
    const v = new DataView(sealed.buffer, sealed.byteOffset, sealed.byteLength)
    const epoch = v.getUint32(1)
    const salt = sealed.subarray(5, 5 + VOICE_SALT_BYTES)
    const counter = v.getBigUint64(5 + VOICE_SALT_BYTES)
    const id = `${space}\0${did}\0${epoch}\0${toHex(salt)}`
    let key = this.opening.get(id)
    if (key == null) {
      const groupKey = keys.key(epoch)
      if (groupKey == null) throw new VoiceOpenError(`no group key of epoch ${epoch}`)
      key = deriveKey(groupKey, salt, space, did)
      while (this.opening.size >= MAX_VOICE_KEYS_CACHED) this.opening.delete(this.opening.keys().next().value as string)
      this.opening.set(id, key)
    }
    const nonce = new Uint8Array(AEAD_NONCE_BYTES)
    new DataView(nonce.buffer).setBigUint64(4, counter)
    const header = sealed.subarray(0, VOICE_SEAL_HEADER_BYTES)
    const plaintext = aeadOpen(key, nonce, sealed.subarray(VOICE_SEAL_HEADER_BYTES), concat(header, aad))
    if (plaintext == null) throw new VoiceOpenError('a sealed voice payload does not authenticate')
    return plaintext
  }

  /** Forgets a space's keys (we left it). */
  forget (space: string): void {
    this.sending.delete(space)
    for (const id of [...this.opening.keys()]) if (id.startsWith(`${space}\0`)) this.opening.delete(id)
  }

  /** Our sending key's state in a space (for tests): its epoch, salt and next counter. */
  sendingState (space: string): { epoch: number, salt: string, counter: number } | undefined {
    const s = this.sending.get(space)
    return s == null ? undefined : { epoch: s.epoch, salt: toHex(s.salt), counter: s.counter }
  }
}
