/**
 * The peer binding: a record signed by the user key that names the libp2p peer id acting for it,
 * so the user key (who you are) and the peer key (which machine) can differ and still be tied.
 */
import type { Ed25519Key } from './ed25519.ts'
import { MalformedRecordError, PeerBindingMismatchError } from './errors.ts'
import { signRecord, verifyRecord, type VerifiedRecord } from './record.ts'

export const PEER_BINDING_TYPE = 'peerverse/peer-binding'
/** A binding is small; anything larger is not one. */
export const MAX_BINDING_BYTES = 1024

export interface PeerBinding {
  peerId: string
  /** Milliseconds since the epoch when the binding was made. */
  issued: number
}

/** Signs a binding of `peerId` to the key's did. */
export async function createPeerBinding (userKey: Ed25519Key, peerId: string, issued: number = Date.now()): Promise<VerifiedRecord<PeerBinding>> {
  return signRecord<PeerBinding>(userKey, PEER_BINDING_TYPE, { peerId, issued })
}

/** Verifies binding bytes and that they bind `expectedPeerId`; returns the did it binds to. */
export async function verifyPeerBinding (bytes: Uint8Array, expectedPeerId: string): Promise<{ did: string, binding: PeerBinding }> {
  const { record } = await verifyRecord<PeerBinding>(bytes, { maxBytes: MAX_BINDING_BYTES, type: PEER_BINDING_TYPE })
  const p = record.payload
  if (p == null || typeof p !== 'object' || typeof p.peerId !== 'string' || typeof p.issued !== 'number') {
    throw new MalformedRecordError('binding payload must be { peerId, issued }')
  }
  if (p.peerId !== expectedPeerId) {
    throw new PeerBindingMismatchError(`binding names peer ${p.peerId}, not ${expectedPeerId}`)
  }
  return { did: record.author, binding: p }
}
