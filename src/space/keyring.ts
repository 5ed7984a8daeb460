/**
 * The group keys of a private space, by epoch, and the owner's envelopes that gave them to us;
 * sealing and opening our traffic with them. Plain state with small synchronous methods: the
 * envelopes are opened with crypto.ts, what to store and when is policy.ts's.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import { decryptGroup, encryptGroup, NotAMemberError, openKeyEnvelope } from './crypto.ts'

/** Key envelopes (epochs) we keep and serve per space. */
export const MAX_KEY_EPOCHS = 64

/** What our traffic under a group key is for: bound into each message as associated data. */
export type SealedChannel = 'gossip' | 'sync' | 'presence' | 'store'

const enc = new TextEncoder()

function aad (space: string, channel: SealedChannel): Uint8Array {
  return enc.encode(`peerverse/space/${space}/${channel}`)
}

export class KeyRing {
  readonly space: string
  /** Group keys by epoch. */
  readonly keys = new Map<number, Uint8Array>()
  /** The newest epoch we hold a key of (0: none). */
  epoch = 0
  /** The envelopes that gave us the keys, by epoch (at most MAX_KEY_EPOCHS). */
  readonly envelopes = new Map<number, Uint8Array>()

  constructor (space: string) {
    this.space = space
  }

  /**
   * Opens an envelope of the space's owner sealed to us: 'key' when it gave us a key, 'left-out'
   * when the envelope is valid but not for us, 'invalid' for anything else.
   */
  accept (me: Ed25519Key, did: string, owner: string, bytes: Uint8Array): 'key' | 'left-out' | 'invalid' {
    try {
      const { epoch, groupKey } = openKeyEnvelope(me, did, bytes, owner, this.space)
      this.keys.set(epoch, groupKey)
      this.envelopes.set(epoch, bytes)
      if (epoch > this.epoch) this.epoch = epoch
      while (this.envelopes.size > MAX_KEY_EPOCHS) this.envelopes.delete(Math.min(...this.envelopes.keys()))
      return 'key'
    } catch (err) {
      return (err as Error).name === 'NotAMemberError' ? 'left-out' : 'invalid'
    }
  }

  /** The newest `n` envelopes, oldest first (what a joiner needs). */
  newest (n: number): Uint8Array[] {
    return [...this.envelopes.entries()].sort((a, b) => a[0] - b[0]).slice(-n).map(e => e[1])
  }

  /** The current key, or NotAMemberError(`message`). */
  current (message = 'no group key'): Uint8Array {
    const key = this.keys.get(this.epoch)
    if (key == null) throw new NotAMemberError(message)
    return key
  }

  /** Encrypts under the current epoch's key for `channel`; NotAMemberError without a key. */
  seal (channel: SealedChannel, plaintext: Uint8Array, message?: string): Uint8Array {
    return encryptGroup(this.current(message), this.epoch, plaintext, aad(this.space, channel))
  }

  /** Decrypts a message sealed for `channel` under any epoch we hold (UnknownEpochError, DecryptError). */
  open (channel: SealedChannel, bytes: Uint8Array): Uint8Array {
    return decryptGroup(e => this.keys.get(e), bytes, aad(this.space, channel)).plaintext
  }
}
