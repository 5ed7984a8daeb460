/**
 * Space-wide gossip (topic `peerverse/space/1/<id>`): every message is a DAG-CBOR frame {t, d} of
 * one record kind; in a private space everything but the owner's policy and key envelopes goes
 * sealed under the group key as a frame of kind 'x' wrapping the real one. Decoding is bounded
 * and refuses with InvalidSpaceRequestError; the sync protocol seals its records the same way.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { GossipPort } from '../net/ports.ts'
import { ADMISSION_NONCE_BYTES } from './admission.ts'
import { InvalidSpaceRequestError } from './errors.ts'
import type { Joined } from './joined.ts'
import { MAX_BEACON_BYTES, MAX_CHAT_BYTES, MAX_POLICY_BYTES, MAX_WORLD_RECORD_BYTES } from './records.ts'

export const SPACE_TOPIC_PREFIX = 'peerverse/space/1/'
/** Largest record inside a space message (the largest record kind, plus a sealed frame's overhead). */
export const MAX_FRAME_RECORD_BYTES = Math.max(MAX_POLICY_BYTES, MAX_WORLD_RECORD_BYTES, MAX_CHAT_BYTES, MAX_BEACON_BYTES) + 1024
/** Largest gossip message on a space topic. */
export const MAX_SPACE_GOSSIP_BYTES = MAX_POLICY_BYTES + 4 * 1024

export type FrameKind = 'beacon' | 'bye' | 'chat' | 'world' | 'policy' | 'keys' | 'presence' | 'x'
/** A frame: its kind, its record, and (chat and beacons) the author's admission proof, admission.ts. */
export interface GossipFrame { t: FrameKind, d: Uint8Array, w?: Uint8Array }

/** Kinds whose frames carry our admission proof when we have one. */
const ADMITTED_KINDS = new Set<FrameKind>(['chat', 'beacon'])

const FRAME_KINDS = new Set<string>(['beacon', 'bye', 'chat', 'world', 'policy', 'keys', 'presence', 'x'])

export function spaceTopic (id: string): string {
  return `${SPACE_TOPIC_PREFIX}${id}`
}

/** Whether a record kind travels in the clear in a private space (the owner's policy and key envelopes). */
export function alwaysClear (kind: FrameKind): boolean {
  return kind === 'policy' || kind === 'keys'
}

export function decodeFrame (bytes: Uint8Array): GossipFrame {
  let v: unknown
  try {
    v = dagCbor.decode(bytes)
  } catch {
    throw new InvalidSpaceRequestError('space message is not DAG-CBOR')
  }
  const f = v as Partial<GossipFrame> | null
  if (f == null || typeof f !== 'object' || typeof f.t !== 'string' || !FRAME_KINDS.has(f.t) || !(f.d instanceof Uint8Array)) {
    throw new InvalidSpaceRequestError('space message must be {t, d}')
  }
  if (f.d.length > MAX_FRAME_RECORD_BYTES) throw new InvalidSpaceRequestError(`space message record over ${MAX_FRAME_RECORD_BYTES} bytes`)
  if (f.w === undefined) return { t: f.t, d: f.d }
  if (!(f.w instanceof Uint8Array) || f.w.length !== ADMISSION_NONCE_BYTES) throw new InvalidSpaceRequestError(`an admission proof is ${ADMISSION_NONCE_BYTES} bytes`)
  return { t: f.t, d: f.d, w: f.w }
}

/** Publishes a frame on the space's topic, sealed in a private space unless `clear`. */
export async function publishFrame (gossip: Pick<GossipPort, 'publish'>, j: Joined, frame: GossipFrame, clear = false): Promise<void> {
  let out = frame
  if (j.admission != null && ADMITTED_KINDS.has(frame.t)) out = { ...frame, w: j.admission }
  if (j.d.private && !clear) out = { t: 'x', d: j.keys.seal('gossip', dagCbor.encode(out), 'no group key for this space') }
  await gossip.publish(spaceTopic(j.d.id), dagCbor.encode(out)).catch(err => {
    // No peer in the space yet is not an error for a member alone in it.
    if (!/NoPeersSubscribedToTopic|PublishError/.test(String((err as Error).message ?? err))) throw err
  })
}

/** The frame a gossip message carries, unsealed; InvalidSpaceRequestError for what a space does not take. */
export function openGossip (j: Joined, data: Uint8Array): GossipFrame {
  let frame = decodeFrame(data)
  if (frame.t === 'x') {
    frame = decodeFrame(j.keys.open('gossip', frame.d))
    if (frame.t === 'x') throw new InvalidSpaceRequestError('nested sealed frame')
  } else if (j.d.private && !alwaysClear(frame.t)) {
    throw new InvalidSpaceRequestError(`a private space takes ${frame.t} only sealed`)
  }
  return frame
}

/** A record as a sync answer carries it: sealed in a private space. */
export function sealSynced (j: Joined, bytes: Uint8Array): Uint8Array {
  if (!j.d.private) return bytes
  return dagCbor.encode({ t: 'x', d: j.keys.seal('sync', bytes) })
}

/** A record from a sync answer, unsealed in a private space. */
export function openSynced (j: Joined, kind: FrameKind, bytes: Uint8Array): Uint8Array {
  if (!j.d.private || alwaysClear(kind)) return bytes
  const frame = decodeFrame(bytes)
  if (frame.t !== 'x') throw new InvalidSpaceRequestError('a private space syncs only sealed records')
  return j.keys.open('sync', frame.d)
}

/** A chat or world record as we store it: sealed under the group key in a private space. */
export function sealStored (j: Joined, bytes: Uint8Array): Uint8Array {
  return j.d.private ? j.keys.seal('store', bytes, 'no group key to store this space\'s records under') : bytes
}

/** A stored chat or world record, opened in a private space (UnknownEpochError, DecryptError). */
export function openStored (j: Joined, bytes: Uint8Array): Uint8Array {
  return j.d.private ? j.keys.open('store', bytes) : bytes
}
