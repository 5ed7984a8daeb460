/**
 * The space sync protocol, `/peerverse/space/1.0.0`: one request, a stream of answer frames.
 *   {op: 'get', space}        -> one frame {descriptor, policy, keys}: what a joiner needs first
 *   {op: 'chat', space}       -> the chat history, one signed record a frame; in a public space a
 *                                record of an author outside the policy comes as {t: 'chat', d, w}
 *                                with the author's admission proof when we hold it
 *   {op: 'world', space, sv}  -> the world records the asker lacks by its Yjs state vector
 * Always the authors' signed records, so the asker checks every one itself; sealed under the
 * group key in a private space. Requests are rate-limited per peer; what breaks the protocol is
 * reported. A pull (syncWith) asks one peer for all of it, one pull per peer and space at a time.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { logger } from '@libp2p/logger'
import type { Stream } from '@libp2p/interface'
import { PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import type { RemotePeer } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { request, serve } from '../net/rpc.ts'
import { InvalidSpaceRequestError, SpaceRateLimitError } from './errors.ts'
import { decodeFrame, openSynced, sealSynced, type FrameKind } from './frames.ts'
import type { Joined, SpaceCore } from './joined.ts'
import { MAX_KEY_EPOCHS } from './keyring.ts'
import type { SpacePolicy } from './policy.ts'
import { MAX_POLICY_BYTES, parseSpaceId, verifyDescriptor } from './records.ts'
import type { Source } from './chat.ts'
import { isPrivileged, MAX_CHAT_KEPT } from './history.ts'
import type { Chat } from './records.ts'
import { World } from './world.ts'

const log = logger('peerverse:space')

export const SPACE_PROTOCOL = '/peerverse/space/1.0.0'
/** Sync requests per peer per second, and burst. */
export const SYNC_REQUESTS_PER_SECOND = 10
export const SYNC_BURST = 40
/** World records in one sync answer. */
export const MAX_SYNC_WORLD_RECORDS = 512
/** World sync requests one pull makes at most (each answers up to MAX_SYNC_WORLD_RECORDS). */
export const MAX_SYNC_WORLD_ROUNDS = 64
/** Bytes one sync answer carries at most. */
export const MAX_SYNC_ANSWER_BYTES = 8 * 1024 * 1024
/** Records sealed and written at a time in an answer. */
const SYNC_CHUNK_RECORDS = 64
/** Key envelopes a `get` answer carries (the newest; older epochs are not needed to join). */
export const MAX_GET_ENVELOPES = 2
/** Largest state vector a world sync request may carry. */
export const MAX_SYNC_STATE_VECTOR_BYTES = 8 * 1024
/** Largest sync request. */
export const MAX_SYNC_REQUEST_BYTES = 16 * 1024
/** Largest frame of a sync answer. */
export const MAX_SYNC_FRAME_BYTES = MAX_POLICY_BYTES + 64 * 1024
/** How often each space syncs with one random peer in it. */
export const SPACE_SYNC_INTERVAL_MS = 30_000

export type SyncRequest =
  | { op: 'get', space: string }
  | { op: 'chat', space: string }
  | { op: 'world', space: string, sv: Uint8Array }

export function parseSyncRequest (bytes: Uint8Array): SyncRequest {
  let v: unknown
  try {
    v = dagCbor.decode(bytes)
  } catch {
    throw new InvalidSpaceRequestError('request is not DAG-CBOR')
  }
  const r = v as Record<string, unknown> | null
  if (r == null || typeof r !== 'object') throw new InvalidSpaceRequestError('request must be a map')
  let space: string
  try {
    space = parseSpaceId(r.space)
  } catch {
    throw new InvalidSpaceRequestError('space must be a space id')
  }
  if (r.op === 'get' || r.op === 'chat') return { op: r.op, space }
  if (r.op === 'world') {
    if (!(r.sv instanceof Uint8Array) || r.sv.length > MAX_SYNC_STATE_VECTOR_BYTES) throw new InvalidSpaceRequestError(`sv must be a Yjs state vector of at most ${MAX_SYNC_STATE_VECTOR_BYTES} bytes`)
    return { op: 'world', space, sv: r.sv }
  }
  throw new InvalidSpaceRequestError(`unknown op ${String(r.op)}`)
}

/** Errors an answer throws that are the asker's fault (framing errors always are). */
const VIOLATIONS = new Set(['InvalidSpaceRequestError', 'SpaceRateLimitError', 'MalformedUpdateError'])

/** Takes one record of a kind, from gossip or from a sync answer. */
export type Ingest = (j: Joined, kind: FrameKind, bytes: Uint8Array, from: string, synced: boolean, src?: Source) => Promise<void>

/** A chat record as a sync answer carries it: with its author's proof where we hold one (public spaces). */
export function syncedChat (j: Joined, c: Chat): Uint8Array {
  const w = j.d.private || isPrivileged(j.d, j.policy, c.author) ? undefined : j.chat.proofOf(c.author)
  return w == null ? sealSynced(j, c.bytes) : dagCbor.encode({ t: 'chat', d: c.bytes, w })
}

/** A chat frame of a sync answer: the record, and its author's proof when it came with one. */
export function openSyncedChat (j: Joined, bytes: Uint8Array): { d: Uint8Array, w?: Uint8Array } {
  if (!j.d.private) {
    let v: unknown
    try { v = dagCbor.decode(bytes) } catch { v = null }
    if ((v as { t?: unknown } | null)?.t === 'chat') {
      const f = decodeFrame(bytes)
      return { d: f.d, w: f.w }
    }
  }
  return { d: openSynced(j, 'chat', bytes) }
}

export class SpaceSync {
  private readonly core: SpaceCore
  private readonly policy: SpacePolicy
  private readonly ingest: Ingest
  private readonly buckets = new TokenBuckets(SYNC_REQUESTS_PER_SECOND, SYNC_BURST)
  private readonly syncing = new Set<string>()
  private readonly answer: (stream: Stream, remote: RemotePeer) => void

  constructor (core: SpaceCore, policy: SpacePolicy, ingest: Ingest) {
    this.core = core
    this.policy = policy
    this.ingest = ingest
    this.answer = serve({
      protocol: SPACE_PROTOCOL,
      maxRequestBytes: MAX_SYNC_REQUEST_BYTES,
      onRejected: core.reject,
      isViolation: err => VIOLATIONS.has(err.name)
    }, async (req, { signal, out }) => { await this.answerRequest(parseSyncRequest(req), out.writeMany.bind(out), out.write.bind(out), signal) })
  }

  /** The protocol's handler: a peer over its request rate is refused before its request is read. */
  readonly handler = (stream: Stream, remote: RemotePeer): void => {
    if (!this.buckets.take(remote.peer)) {
      const err = new SpaceRateLimitError(`more than ${SYNC_REQUESTS_PER_SECOND} space requests a second`)
      stream.abort(err)
      this.core.reject(remote.peer, SPACE_PROTOCOL, err)
      return
    }
    this.answer(stream, remote)
  }

  private async answerRequest (
    req: SyncRequest,
    writeMany: (frames: Uint8Array[], options: { signal: AbortSignal }) => Promise<void>,
    write: (frame: Uint8Array, options: { signal: AbortSignal }) => Promise<void>,
    signal: AbortSignal
  ): Promise<void> {
    const j = this.core.joined.get(req.space)
    if (req.op === 'get') {
      const d = await this.core.store.get('s', req.space)
      if (d == null) return
      const keys = j != null ? j.keys.newest(MAX_GET_ENVELOPES) : []
      await write(dagCbor.encode({ descriptor: d, policy: await this.core.store.get('p', req.space) ?? null, keys }), { signal })
      return
    }
    if (j == null || j.removed) return
    const records = req.op === 'chat'
      ? j.chat.messages.slice()
      : World.needed(req.sv, j.edits.records).slice(0, MAX_SYNC_WORLD_RECORDS)
    // Sealed a chunk at a time, as sent, and no more than MAX_SYNC_ANSWER_BYTES in all.
    let sent = 0
    for (let i = 0; i < records.length && sent < MAX_SYNC_ANSWER_BYTES; i += SYNC_CHUNK_RECORDS) {
      const chunk = req.op === 'chat'
        ? (records.slice(i, i + SYNC_CHUNK_RECORDS) as Chat[]).map(c => syncedChat(j, c))
        : records.slice(i, i + SYNC_CHUNK_RECORDS).map(r => sealSynced(j, r.bytes))
      sent += chunk.reduce((n, b) => n + b.length, 0)
      await writeMany(chunk, { signal })
    }
  }

  /** One request to `peer`; a frame `onFrame` throws on is reported, and the answer read on. */
  private async request (peer: string, req: SyncRequest, onFrame: (bytes: Uint8Array) => Promise<boolean>, addresses?: string[]): Promise<void> {
    await request(this.core.protocols, peer, SPACE_PROTOCOL, dagCbor.encode(req), async frame => {
      try {
        return await onFrame(frame)
      } catch (err) {
        this.core.reject(peer, SPACE_PROTOCOL, err as Error)
        return true
      }
    }, { maxFrameBytes: MAX_SYNC_FRAME_BYTES, timeoutMs: PROTOCOL_TIMEOUT_MS * 2, runOnLimitedConnection: true, addresses })
  }

  /**
   * Asks one peer for a space's descriptor, policy and envelopes; stores what verifies. With
   * `addresses` (a link's) the peer is dialled there when not connected.
   */
  async getFrom (peer: string, id: string, addresses?: string[]): Promise<boolean> {
    let got = false
    await this.request(peer, { op: 'get', space: id }, async frame => {
      const v = dagCbor.decode(frame) as { descriptor?: unknown, policy?: unknown, keys?: unknown }
      if (!(v?.descriptor instanceof Uint8Array)) return false
      const d = verifyDescriptor(v.descriptor, id)
      await this.core.store.put('s', id, d.bytes)
      if (v.policy instanceof Uint8Array) await this.policy.takePolicy(d, v.policy)
      if (Array.isArray(v.keys)) {
        for (const k of v.keys.slice(0, MAX_KEY_EPOCHS)) if (k instanceof Uint8Array) await this.policy.takeEnvelope(d, k)
      }
      got = true
      return false
    }, addresses)
    return got
  }

  /** Pulls one peer's policy, keys, chat and world updates we lack (one pull per peer and space at a time). */
  async syncWith (j: Joined, peer: string): Promise<void> {
    const key = `${j.d.id}/${peer}`
    if (this.syncing.has(key)) return
    this.syncing.add(key)
    try {
      await this.pull(j, peer)
    } finally {
      this.syncing.delete(key)
    }
  }

  private async pull (j: Joined, peer: string): Promise<void> {
    const id = j.d.id
    await this.getFrom(peer, id)
    let chats = 0
    // One answer brings unproven authors only up to MAX_SYNC_NEW_AUTHORS (chat.ts).
    const strangers = new Set<string>()
    await this.request(peer, { op: 'chat', space: id }, async frame => {
      const { d, w } = openSyncedChat(j, frame)
      await this.ingest(j, 'chat', d, peer, true, { peer, proof: w, strangers })
      return ++chats < MAX_CHAT_KEPT
    })
    for (let round = 0; round < MAX_SYNC_WORLD_ROUNDS; round++) {
      let got = 0
      const sv = j.edits.world.stateVector()
      await this.request(peer, { op: 'world', space: id, sv }, async frame => {
        await this.ingest(j, 'world', openSynced(j, 'world', frame), peer, true)
        return ++got < MAX_SYNC_WORLD_RECORDS
      })
      // A short answer was all of it; a full one that taught us nothing will not either.
      if (got < MAX_SYNC_WORLD_RECORDS || sameBytes(j.edits.world.stateVector(), sv)) break
    }
  }

  /** Anti-entropy: each round, every space syncs with one random peer in it (heals what gossip missed). */
  antiEntropy (topicOf: (id: string) => string): void {
    for (const j of this.core.joined.values()) {
      const peers = this.core.gossip.subscribers(topicOf(j.d.id))
      if (peers.length === 0 || j.removed) continue
      const peer = peers[Math.floor(Math.random() * peers.length)]
      void this.syncWith(j, peer).catch(err => { log('anti-entropy %s: %s', j.d.id, (err as Error).message) })
    }
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
