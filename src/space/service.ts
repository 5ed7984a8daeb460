/**
 * The space capability: shared 3D places whose state lives with the peers in them.
 *
 * - Finding a space: its id is the CID of its signed descriptor; members announce it in the DHT
 *   (as content providers), so anyone with the id finds peers in it and fetches the descriptor,
 *   the owner's policy and, for private spaces, the sealed key envelopes over
 *   `/peerverse/space/1.0.0`.
 * - Space-wide gossip (topic `peerverse/space/1/<id>`): low-rate beacons (where a member is, which
 *   peer it runs), leaving notices, chat, world updates, policy and key envelopes. Everything but
 *   the owner's policy and key envelopes is encrypted with the group key in a private space.
 * - Presence at up to 20 Hz goes only to the members near us (interest.ts), over a direct,
 *   authenticated stream (`/peerverse/space-presence/1.0.0`): one hop, no per-frame signature
 *   (the stream is bound to the sender's user key by its signed peer binding), and a fan-out
 *   bounded by MAX_NEAR_MEMBERS however many are in the space.
 * - The world (world.ts) and chat are kept on disk and synced to joiners: chat as the bounded
 *   history, the world by Yjs state vector, always as the authors' signed records so a joiner
 *   checks every edit itself.
 * - Moderation is the owner's signed policy: editors, banned, muted, kicked and, for a private
 *   space, the members. Every honest peer drops what the policy excludes.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { randomBytes } from 'node:crypto'
import * as Y from 'yjs'
import { verifyPeerBinding } from '../identity/binding.ts'
import { isDid } from '../identity/did.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS, PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import type { Network } from '../net/network.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { createKeyEnvelope, decryptGroup, encryptGroup, openKeyEnvelope } from './crypto.ts'
import { Interest, MAX_NEAR_MEMBERS, MAX_ROSTER_MEMBERS, MEMBER_TIMEOUT_MS } from './interest.ts'
import { decodePresence, encodePresence, MAX_DISPLAY_NAME_BYTES, MAX_PRESENCE_FRAME_BYTES, PresenceTrack, type Presence } from './presence-wire.ts'
import {
  createBeacon, createBye, createChat, createDescriptor, createPolicy, createWorldRecord, DEFAULT_KICK_MS, initialPolicy,
  isExcluded, MAX_BEACON_BYTES, MAX_CHAT_BYTES, MAX_NAME_LENGTH, MAX_POLICY_BYTES, MAX_WORLD_RECORD_BYTES, NotSpaceOwnerError, parseSpaceId,
  verifyBeacon, verifyBye, verifyChat, verifyDescriptor, verifyPolicy, verifyWorldRecord,
  type Chat, type Descriptor, type Grid, type PolicyPayload
} from './records.ts'
import { MAX_CHAT_HISTORY, SpaceStore } from './store.ts'
import { KeyedLock } from '../store/keyed-lock.ts'
import { clientIdForDid, decodeStateVector, decodeWorldUpdate, EditNotAllowedError, MAX_ALTITUDE, moveObject, placeObject, removeObject, World, type EditContext, type WorldObject, type WorldObjectValue } from './world.ts'

const log = logger('peerverse:space')

export const SPACE_PROTOCOL = '/peerverse/space/1.0.0'
export const PRESENCE_PROTOCOL = '/peerverse/space-presence/1.0.0'
/** Fastest presence rate, frames per second, while moving. */
export const MAX_PRESENCE_HZ = 20
/** Presence frame interval while moving. */
export const MOVE_INTERVAL_MS = 1000 / MAX_PRESENCE_HZ
/** A member counts as moving this long after its last move. */
export const MOVING_GRACE_MS = 250
/** Presence heartbeat to near members while still. */
export const STILL_HEARTBEAT_MS = 1_000
/**
 * Space-wide beacon interval while moving, and while still: at least these, and stretched with
 * the roster so that a member receives at most BEACONS_IN_MOVING_PER_SECOND (moving senders) plus
 * BEACONS_IN_STILL_PER_SECOND (still ones) however many share the space: what the far members cost
 * does not grow with the space's size.
 */
export const BEACON_MOVING_MS = 2_000
export const BEACON_STILL_MS = 5_000
export const BEACONS_IN_MOVING_PER_SECOND = 25
export const BEACONS_IN_STILL_PER_SECOND = 10
/** How often members are checked for silence and exclusion. */
export const SWEEP_INTERVAL_MS = 250
/** A member not heard from (beacon or presence) for this long is gone. */
export const MEMBER_GONE_MS = BEACON_STILL_MS * 2 + 1_000

/** Our beacon interval in a space of `roster` members. */
export function beaconInterval (moving: boolean, roster: number): number {
  return moving
    ? Math.max(BEACON_MOVING_MS, Math.ceil(roster * 1000 / BEACONS_IN_MOVING_PER_SECOND))
    : Math.max(BEACON_STILL_MS, Math.ceil(roster * 1000 / BEACONS_IN_STILL_PER_SECOND))
}

/** How long a far member may be silent before it counts as gone, in a space of `roster` members. */
export function goneAfter (roster: number): number {
  return Math.max(MEMBER_GONE_MS, beaconInterval(false, roster) * 2 + 1_000)
}
/** Frames per second a presence stream may carry (twice the fastest honest rate); past it the stream is closed. */
export const PRESENCE_FRAMES_PER_SECOND = MAX_PRESENCE_HZ * 2
/** Presence streams one peer may hold open to us at once. */
export const MAX_PRESENCE_STREAMS_PER_PEER = 4
/** Chat messages per author per second, and burst. */
export const CHAT_PER_SECOND = 2
export const CHAT_BURST = 10
/** World updates per author per second, and burst. */
export const WORLD_UPDATES_PER_SECOND = 20
export const WORLD_UPDATE_BURST = 100
/** Beacons one peer may send per second (over all our spaces), and burst. */
export const BEACONS_PER_PEER_PER_SECOND = 2
export const BEACON_BURST = 8
/** A beacon or leaving notice older than this is a replay. */
export const MAX_BEACON_AGE_MS = 60_000
/** Sync requests per peer per second, and burst. */
export const SYNC_REQUESTS_PER_SECOND = 10
export const SYNC_BURST = 40
/** World records in one sync answer. */
export const MAX_SYNC_WORLD_RECORDS = 512
/** World sync requests one pull makes at most (each answers up to MAX_SYNC_WORLD_RECORDS). */
export const MAX_SYNC_WORLD_ROUNDS = 64
/** Bytes one sync answer carries at most. */
export const MAX_SYNC_ANSWER_BYTES = 8 * 1024 * 1024
/** Key envelopes a `get` answer carries (the newest; older epochs are not needed to join). */
export const MAX_GET_ENVELOPES = 2
/** Largest state vector a world sync request may carry. */
export const MAX_SYNC_STATE_VECTOR_BYTES = 8 * 1024
/** Largest record inside a space message (the largest record kind, plus a sealed frame's overhead). */
export const MAX_FRAME_RECORD_BYTES = Math.max(MAX_POLICY_BYTES, MAX_WORLD_RECORD_BYTES, MAX_CHAT_BYTES, MAX_BEACON_BYTES) + 1024
/** Largest sync request. */
export const MAX_SYNC_REQUEST_BYTES = 16 * 1024
/** Largest frame of a sync answer. */
export const MAX_SYNC_FRAME_BYTES = MAX_POLICY_BYTES + 64 * 1024
/** Key envelopes (epochs) we keep and serve per space. */
export const MAX_KEY_EPOCHS = 64
/** How often each space syncs with one random peer in it. */
export const SPACE_SYNC_INTERVAL_MS = 30_000
/** Spaces one peer may be in at once. */
export const MAX_JOINED_SPACES = 64
/** Peers a join asks for the descriptor and history. */
export const MAX_SYNC_PEERS = 3
/** How long a join looks for a peer that has the space. */
export const JOIN_TIMEOUT_MS = 20_000
/** Largest gossip message on a space topic. */
export const MAX_SPACE_GOSSIP_BYTES = MAX_POLICY_BYTES + 4 * 1024

export class SpaceNotFoundError extends Error { name = 'SpaceNotFoundError' }
export class NotJoinedError extends Error { name = 'NotJoinedError' }
export class ExcludedError extends Error { name = 'ExcludedError' }
export class NotAMemberError extends Error { name = 'NotAMemberError' }
export class SpaceRateLimitError extends Error { name = 'SpaceRateLimitError' }
export class InvalidSpaceRequestError extends Error { name = 'InvalidSpaceRequestError' }
export class TooManySpacesError extends Error { name = 'TooManySpacesError' }

export function spaceTopic (id: string): string {
  return `peerverse/space/1/${id}`
}

export interface MemberView {
  did: string
  peer: string
  name: string
  avatar: string
  position: [number, number, number]
  rotation: [number, number, number, number]
  /** Whether this member is in our area of interest (frequent updates). */
  near: boolean
  moving: boolean
  seenAt: number
  /** The sender's clock (ms) when it sent the position we hold: for interpolation, and for latency. */
  time: number
}

export interface ChatView { id: string, author: string, text: string, ts: number }

export interface SpaceView {
  id: string
  name: string
  owner: string
  grid: Grid
  private: boolean
  created: number
  policy: Omit<PolicyPayload, 'space'>
  members: number
  objects: number
}

export interface SpaceEvents {
  onPresence?: (space: string, member: MemberView) => void
  onLeave?: (space: string, did: string) => void
  onChat?: (space: string, chat: ChatView) => void
  onWorld?: (space: string, change: { author: string, objects: string[] }) => void
  onPolicy?: (space: string, policy: PolicyPayload) => void
  onRejected?: (peerId: string, protocol: string, error: Error) => void
}

export interface SpaceComponents {
  net: Network
  store: SpaceStore
  key: Ed25519Key
  did: string
  /** Our signed peer binding (user key -> this peer), sent when we open a presence stream. */
  binding: Uint8Array
  /** Land parcels of a space from the ledger (x/y of a parcel are metres on x/z). */
  parcels: (space: string) => Iterable<{ owner: string, x: number, y: number, w: number, h: number }>
  publish: (topic: string, data: Uint8Array) => Promise<number>
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
  events?: SpaceEvents
  /** Interest management on (default) or off (everyone gets every frame, over gossip): for benchmarks. */
  interest?: boolean
}

interface Member extends MemberView {
  addrs: string[]
  track: PresenceTrack
  beaconTs: number
}

interface Outbound {
  stream?: Stream
  write?: (bytes: Uint8Array) => Promise<void>
  opening?: Promise<void>
  busy: boolean
  sentFull: boolean
  lastSentAt: number
  closed: boolean
}

interface Joined {
  d: Descriptor
  policy: PolicyPayload
  world: World
  /** Accepted world records with the Yjs clock range each adds, for sync. */
  worldRecords: Array<{ client: number, clockStart: number, clockEnd: number, bytes: Uint8Array }>
  chat: Chat[]
  chatIds: Set<string>
  /** Group keys by epoch (private spaces). */
  keys: Map<number, Uint8Array>
  epoch: number
  envelopes: Map<number, Uint8Array>
  me: {
    name: string
    avatar: string
    position: [number, number, number]
    rotation: [number, number, number, number]
    lastMoveAt: number
    lastFrameAt: number
    lastBeaconAt: number
    seq: number
    /** Bumped when name or avatar change, so near members get a full frame again. */
    look: number
  }
  interest: Interest
  members: Map<string, Member>
  out: Map<string, Outbound>
  inbound: Map<string, Set<Stream>>
  removed: boolean
  sweptAt: number
}

type SyncRequest =
  | { op: 'get', space: string }
  | { op: 'chat', space: string }
  | { op: 'world', space: string, sv: Uint8Array }

type GossipFrame = { t: 'beacon' | 'bye' | 'chat' | 'world' | 'policy' | 'keys' | 'presence' | 'x', d: Uint8Array }

const enc = new TextEncoder()

function aad (space: string, what: string): Uint8Array {
  return enc.encode(`peerverse/space/${space}/${what}`)
}

function quatOk (q: number[]): boolean {
  return q.length === 4 && q.every(Number.isFinite) && Math.abs(Math.hypot(...q) - 1) < 1e-3
}

export class SpaceService {
  private readonly c: SpaceComponents
  private readonly net: Network
  readonly store: SpaceStore
  readonly did: string
  private readonly events: SpaceEvents
  private readonly joined = new Map<string, Joined>()
  private readonly chatBuckets = new TokenBuckets(CHAT_PER_SECOND, CHAT_BURST)
  private readonly worldBuckets = new TokenBuckets(WORLD_UPDATES_PER_SECOND, WORLD_UPDATE_BURST)
  private readonly syncBuckets = new TokenBuckets(SYNC_REQUESTS_PER_SECOND, SYNC_BURST)
  private readonly beaconBuckets = new TokenBuckets(BEACONS_PER_PEER_PER_SECOND, BEACON_BURST)
  private readonly interestOn: boolean
  private readonly syncing = new Set<string>()
  private readonly opening = new Map<string, Promise<void>>()
  private readonly locks = new KeyedLock()
  private timer?: ReturnType<typeof setInterval>
  private syncTimer?: ReturnType<typeof setInterval>
  private started = false
  /** A peer that newly subscribes to one of our spaces (joined, or back from a partition) is synced with. */
  private readonly onSubscription = (evt: CustomEvent<{ peerId: PeerId, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    for (const sub of evt.detail.subscriptions) {
      if (!sub.subscribe || !sub.topic.startsWith('peerverse/space/1/')) continue
      const j = this.joined.get(sub.topic.slice('peerverse/space/1/'.length))
      if (j != null) void this.syncWith(j, evt.detail.peerId).catch(err => { log('sync with new subscriber: %s', (err as Error).message) })
    }
  }

  constructor (components: SpaceComponents) {
    this.c = components
    this.net = components.net
    this.store = components.store
    this.did = components.did
    this.events = components.events ?? {}
    this.interestOn = components.interest !== false
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.net.handle(SPACE_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    await this.net.handle(PRESENCE_PROTOCOL, (stream, connection) => { void this.receivePresence(stream, connection) }, {
      maxInboundStreams: MAX_JOINED_SPACES,
      maxOutboundStreams: MAX_JOINED_SPACES,
      runOnLimitedConnection: true
    })
    this.timer = setInterval(() => { this.tick() }, MOVE_INTERVAL_MS / 2)
    this.timer.unref?.()
    this.syncTimer = setInterval(() => { this.antiEntropy() }, SPACE_SYNC_INTERVAL_MS)
    this.syncTimer.unref?.()
    this.net.services.pubsub.addEventListener('subscription-change', this.onSubscription)
    // Rejoin the spaces we were in.
    for (const [id, m] of await this.store.memberships()) {
      try {
        await this.open(id, m.name, m.avatar, { offline: true })
      } catch (err) {
        log('could not rejoin %s: %s', id, (err as Error).message)
      }
    }
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.timer)
    clearInterval(this.syncTimer)
    this.net.services.pubsub.removeEventListener('subscription-change', this.onSubscription)
    for (const [id, j] of this.joined) {
      await this.sayBye(j).catch(() => {})
      this.closeAll(j)
      this.joined.delete(id)
    }
    await this.net.unhandle(SPACE_PROTOCOL)
    await this.net.unhandle(PRESENCE_PROTOCOL)
  }

  // -- creating, joining, leaving ------------------------------------------------------------

  /** Creates a space owned by us and joins it. */
  async create (options: { name: string, grid?: Partial<Grid>, private?: boolean, displayName?: string, avatar?: string }): Promise<SpaceView> {
    checkLook({ name: options.displayName, avatar: options.avatar })
    const d = await createDescriptor(this.c.key, options)
    await this.store.put('s', d.id, d.bytes, true)
    if (d.private) {
      const policy = await createPolicy(this.c.key, d, { ...initialPolicy(d), seq: 1 })
      await this.store.put('p', d.id, policy.bytes, true)
      await this.storeEnvelope(d.id, 1, await this.makeEnvelope(d, 1, randomBytes(32), policy.members))
    }
    await this.open(d.id, options.displayName ?? '', options.avatar ?? '', { offline: true })
    return this.view(d.id)
  }

  /** Joins a space by id: finds peers in it, fetches what we lack, and starts presence. */
  async join (id: string, options: { name?: string, avatar?: string, signal?: AbortSignal } = {}): Promise<SpaceView> {
    parseSpaceId(id)
    checkLook(options)
    const j = this.joined.get(id)
    if (j != null) {
      if (options.name != null || options.avatar != null) this.setLook(id, options)
      return this.view(id)
    }
    await this.open(id, options.name ?? '', options.avatar ?? '', { signal: options.signal })
    return this.view(id)
  }

  /** Opens a space once: a second open while the first runs waits for it. */
  private async open (id: string, name: string, avatar: string, options: { offline?: boolean, signal?: AbortSignal }): Promise<void> {
    if (this.joined.has(id)) return
    const running = this.opening.get(id)
    if (running != null) return await running
    const run = this.doOpen(id, name, avatar, options).finally(() => { this.opening.delete(id) })
    this.opening.set(id, run)
    return await run
  }

  private async doOpen (id: string, name: string, avatar: string, options: { offline?: boolean, signal?: AbortSignal }): Promise<void> {
    if (this.joined.size + this.opening.size >= MAX_JOINED_SPACES) throw new TooManySpacesError(`already in ${MAX_JOINED_SPACES} spaces`)
    let stored = await this.store.get('s', id)
    if (stored == null) {
      if (options.offline === true) throw new SpaceNotFoundError(`space ${id} is not held here`)
      await this.fetchSpace(id, options.signal)
      stored = await this.store.get('s', id)
      if (stored == null) throw new SpaceNotFoundError(`no peer has space ${id}`)
    }
    const d = verifyDescriptor(stored, id)
    const policyBytes = await this.store.get('p', id)
    const policy = policyBytes == null ? initialPolicy(d) : verifyPolicy(policyBytes, d)
    if (isExcluded(d, policy, this.did, Date.now())) {
      throw d.private && !policy.members.includes(this.did) ? new NotAMemberError(`not a member of private space ${id}`) : new ExcludedError(`the owner keeps you out of ${id}`)
    }
    const j: Joined = {
      d,
      policy,
      world: new World(),
      worldRecords: [],
      chat: [],
      chatIds: new Set(),
      keys: new Map(),
      epoch: 0,
      envelopes: new Map(),
      me: { name, avatar, position: [d.grid.width / 2, 0, d.grid.depth / 2], rotation: [0, 0, 0, 1], lastMoveAt: 0, lastFrameAt: 0, lastBeaconAt: 0, seq: 0, look: 0 },
      // Expiry is ours (the sweep), by whether a member is near and how big the space is.
      interest: new Interest({ memberTimeoutMs: 24 * 3600_000 }),
      members: new Map(),
      out: new Map(),
      inbound: new Map(),
      removed: false,
      sweptAt: 0
    }
    // Keys first (private spaces): the history is stored in the clear, but what arrives is sealed.
    for (const [, env] of (await this.store.envelopes(id)).slice(-MAX_KEY_EPOCHS)) this.acceptEnvelope(j, env)
    if (j.keys.size > 0) j.removed = false
    if (d.private && j.keys.size === 0) throw new NotAMemberError(`no key of private space ${id} is sealed to us`)
    // Replay what we accepted before: it passed the rules then, so its authors' rights are taken as given.
    for await (const bytes of this.store.world(id)) {
      try {
        const rec = verifyWorldRecord(bytes, id)
        const applied = j.world.apply(rec.author, rec.update, { ...this.editContext(j), owner: rec.author })
        j.worldRecords.push({ client: applied.client, clockStart: applied.clockStart, clockEnd: applied.clockEnd, bytes })
      } catch (err) {
        log.error('stored world record of %s failed to replay: %s', id, (err as Error).message)
      }
    }
    for (const bytes of await this.store.chat(id)) {
      try { this.addChatLocal(j, verifyChat(bytes, id, Number.MAX_SAFE_INTEGER)) } catch {}
    }
    this.joined.set(id, j)
    await this.store.setMembership(id, { name, avatar, joined: Date.now() })
    this.c.subscribe(spaceTopic(id))
    void this.announce(id)
    void this.syncFromPeers(j).catch(err => { log('sync of %s: %s', id, (err as Error).message) })
    void this.sendBeacon(j).catch(() => {})
  }

  async leave (id: string): Promise<void> {
    const j = this.need(id)
    await this.sayBye(j).catch(() => {})
    this.closeAll(j)
    this.joined.delete(id)
    this.heldWorld.delete(id)
    this.c.unsubscribe(spaceTopic(id))
    await this.store.setMembership(id, null)
  }

  private async sayBye (j: Joined): Promise<void> {
    const bye = await createBye(this.c.key, j.d.id)
    await this.publishFrame(j, { t: 'bye', d: bye.bytes })
  }

  private closeAll (j: Joined): void {
    for (const o of j.out.values()) { o.closed = true; void o.stream?.close().catch(() => {}) }
    j.out.clear()
    for (const set of j.inbound.values()) for (const s of set) s.abort(new Error('left the space'))
    j.inbound.clear()
  }

  /** Announces that we are in the space (DHT provider record), so joiners find us. */
  private async announce (id: string): Promise<void> {
    try {
      await this.net.contentRouting.provide(CID.parse(id), { signal: AbortSignal.timeout(60_000) })
    } catch (err) {
      log('announcing %s: %s', id, (err as Error).message)
    }
  }

  /** Peers that may have the space: connected subscribers of its topic, then DHT providers. */
  private async * candidates (id: string, signal: AbortSignal): AsyncGenerator<PeerId> {
    const seen = new Set<string>([this.net.peerId.toString()])
    for (const p of this.net.services.pubsub.getSubscribers(spaceTopic(id))) {
      if (!seen.has(p.toString())) { seen.add(p.toString()); yield p }
    }
    try {
      for await (const prov of this.net.contentRouting.findProviders(CID.parse(id), { signal })) {
        if (seen.has(prov.id.toString())) continue
        seen.add(prov.id.toString())
        if (prov.multiaddrs.length > 0) await this.net.peerStore.merge(prov.id, { multiaddrs: prov.multiaddrs }).catch(() => {})
        yield prov.id
      }
    } catch (err) {
      if (!signal.aborted) log('finding providers of %s: %s', id, (err as Error).message)
    }
  }

  /**
   * Fetches the descriptor, policy and key envelopes of a space we do not hold: asks the topic's
   * subscribers, the DHT's providers, then the other connected peers, and tries again (a provider
   * record may still be on its way) until JOIN_TIMEOUT_MS.
   */
  private async fetchSpace (id: string, outer?: AbortSignal): Promise<void> {
    const signal = outer == null ? AbortSignal.timeout(JOIN_TIMEOUT_MS) : AbortSignal.any([outer, AbortSignal.timeout(JOIN_TIMEOUT_MS)])
    const asked = new Set<string>()
    const ask = async (peer: PeerId): Promise<boolean> => {
      asked.add(peer.toString())
      try {
        return await this.getFrom(peer, id)
      } catch (err) {
        log('get %s from %s: %s', id, peer, (err as Error).message)
        return false
      }
    }
    for (let delay = 250; !signal.aborted; delay = Math.min(delay * 2, 4_000)) {
      for await (const peer of this.candidates(id, signal)) {
        if (await ask(peer)) return
        if (signal.aborted) return
      }
      for (const peer of this.net.getPeers()) {
        if (asked.has(peer.toString())) continue
        if (await ask(peer)) return
      }
      asked.clear()
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, delay)
        signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
      })
    }
  }

  /** Asks one peer for a space's descriptor, policy and envelopes; stores what verifies. */
  private async getFrom (peer: PeerId, id: string): Promise<boolean> {
    let got = false
    await this.request(peer, { op: 'get', space: id }, async frame => {
      const v = dagCbor.decode(frame) as { descriptor?: unknown, policy?: unknown, keys?: unknown }
      if (!(v?.descriptor instanceof Uint8Array)) return false
      const d = verifyDescriptor(v.descriptor, id)
      await this.store.put('s', id, d.bytes)
      if (v.policy instanceof Uint8Array) await this.takePolicy(d, v.policy)
      if (Array.isArray(v.keys)) {
        for (const k of v.keys.slice(0, MAX_KEY_EPOCHS)) if (k instanceof Uint8Array) await this.takeEnvelope(d, k)
      }
      got = true
      return false
    })
    return got
  }

  /** Pulls chat history and the world from a few peers in the space. */
  private async syncFromPeers (j: Joined): Promise<void> {
    const signal = AbortSignal.timeout(JOIN_TIMEOUT_MS)
    let n = 0
    for await (const peer of this.candidates(j.d.id, signal)) {
      try {
        await this.syncWith(j, peer)
        n++
      } catch (err) {
        log('sync %s with %s: %s', j.d.id, peer, (err as Error).message)
      }
      if (n >= MAX_SYNC_PEERS || !this.joined.has(j.d.id)) break
    }
  }

  /** Pulls one peer's policy, keys, chat and world updates we lack (one pull per peer and space at a time). */
  async syncWith (j: Joined, peer: PeerId): Promise<void> {
    const key = `${j.d.id}/${peer.toString()}`
    if (this.syncing.has(key)) return
    this.syncing.add(key)
    try {
      await this.pull(j, peer)
    } finally {
      this.syncing.delete(key)
    }
  }

  private async pull (j: Joined, peer: PeerId): Promise<void> {
    const id = j.d.id
    await this.getFrom(peer, id)
    let chats = 0
    await this.request(peer, { op: 'chat', space: id }, async frame => {
      await this.ingest(j, 'chat', frame, peer.toString(), true)
      return ++chats < MAX_CHAT_HISTORY
    })
    for (let round = 0; round < MAX_SYNC_WORLD_ROUNDS; round++) {
      let got = 0
      const sv = j.world.stateVector()
      await this.request(peer, { op: 'world', space: id, sv }, async frame => {
        await this.ingest(j, 'world', frame, peer.toString(), true)
        return ++got < MAX_SYNC_WORLD_RECORDS
      })
      // A short answer was all of it; a full one that taught us nothing will not either.
      if (got < MAX_SYNC_WORLD_RECORDS || Buffer.from(j.world.stateVector()).equals(sv)) break
    }
  }

  /** Anti-entropy: each round, every space syncs with one random peer in it (heals what gossip missed). */
  private antiEntropy (): void {
    for (const j of this.joined.values()) {
      const peers = this.net.services.pubsub.getSubscribers(spaceTopic(j.d.id))
      if (peers.length === 0 || j.removed) continue
      const peer = peers[Math.floor(Math.random() * peers.length)]
      void this.syncWith(j, peer).catch(err => { log('anti-entropy %s: %s', j.d.id, (err as Error).message) })
    }
  }

  // -- what a member does ----------------------------------------------------------------------

  private need (id: string): Joined {
    const j = this.joined.get(id)
    if (j == null) throw new NotJoinedError(`not in space ${id}`)
    return j
  }

  /** Our position and rotation in a space (the client calls this as we move, up to 20 Hz). */
  move (id: string, position: [number, number, number], rotation: [number, number, number, number] = [0, 0, 0, 1]): void {
    const j = this.need(id)
    if (position.length !== 3 || !position.every(Number.isFinite)) throw new InvalidSpaceRequestError('position must be 3 finite numbers')
    if (!quatOk(rotation)) throw new InvalidSpaceRequestError('rotation must be a unit quaternion')
    const g = j.d.grid
    j.me.position = [Math.min(Math.max(position[0], 0), g.width), Math.min(Math.max(position[1], -MAX_ALTITUDE), MAX_ALTITUDE), Math.min(Math.max(position[2], 0), g.depth)]
    j.me.rotation = rotation
    const now = Date.now()
    j.me.lastMoveAt = now
    j.interest.setPosition(j.me.position[0], j.me.position[2])
    // A move goes out at once when the 20 Hz budget allows, not at the next tick.
    if (this.interestOn && !j.removed && now - j.me.lastFrameAt >= MOVE_INTERVAL_MS - 2) {
      try {
        this.sendFrames(j, now, true)
      } catch (err) {
        log.error('presence of %s: %s', id, (err as Error).message)
      }
    }
  }

  setLook (id: string, look: { name?: string, avatar?: string }): void {
    const j = this.need(id)
    checkLook(look)
    if (look.name != null) j.me.name = look.name
    if (look.avatar != null) j.me.avatar = look.avatar
    j.me.look++
    for (const o of j.out.values()) o.sentFull = false
    void this.store.setMembership(id, { name: j.me.name, avatar: j.me.avatar, joined: Date.now() }).catch(() => {})
  }

  async say (id: string, text: string): Promise<ChatView> {
    const j = this.need(id)
    this.checkActive(j)
    if (j.policy.muted.includes(this.did)) throw new ExcludedError('the owner has muted you in this space')
    const chat = await createChat(this.c.key, id, text)
    await this.store.addChat(id, chat.ts, chat.id, chat.bytes, true)
    this.addChatLocal(j, chat)
    this.events.onChat?.(id, chatView(chat))
    await this.publishFrame(j, { t: 'chat', d: chat.bytes })
    return chatView(chat)
  }

  chat (id: string, options: { limit?: number } = {}): ChatView[] {
    const j = this.need(id)
    const limit = Math.max(1, Math.min(options.limit ?? MAX_CHAT_HISTORY, MAX_CHAT_HISTORY))
    return j.chat.filter(c => !j.policy.muted.includes(c.author) && !j.policy.banned.includes(c.author)).slice(-limit).map(chatView)
  }

  objects (id: string): Array<WorldObject & { id: string }> {
    const j = this.need(id)
    return [...j.world.objects()].map(([oid, o]) => ({ ...o, id: oid }))
  }

  /** Places (or replaces) an object; returns its id. */
  async place (id: string, value: WorldObjectValue, objectId?: string): Promise<string> {
    const j = this.need(id)
    const oid = objectId ?? randomBytes(9).toString('base64url')
    await this.edit(j, placeObject(j.world, this.did, oid, value))
    return oid
  }

  async moveObject (id: string, objectId: string, transform: Partial<Pick<WorldObjectValue, 'position' | 'rotation' | 'scale'>>): Promise<void> {
    const j = this.need(id)
    await this.edit(j, moveObject(j.world, this.did, objectId, transform))
  }

  async removeObject (id: string, objectId: string): Promise<void> {
    const j = this.need(id)
    await this.edit(j, removeObject(j.world, this.did, objectId))
  }

  /** Throws ExcludedError when the owner keeps us out (banned, kicked, removed from a private space). */
  private checkActive (j: Joined): void {
    if (j.removed || isExcluded(j.d, j.policy, this.did, Date.now())) throw new ExcludedError(`the owner keeps you out of ${j.d.id}`)
  }

  private async edit (j: Joined, update: Uint8Array): Promise<void> {
    this.checkActive(j)
    const rec = await createWorldRecord(this.c.key, j.d.id, update)
    const applied = j.world.apply(this.did, update, this.editContext(j))
    await this.store.addWorld(j.d.id, rec.bytes, true)
    j.worldRecords.push({ client: applied.client, clockStart: applied.clockStart, clockEnd: applied.clockEnd, bytes: rec.bytes })
    this.events.onWorld?.(j.d.id, { author: this.did, objects: applied.objects })
    await this.publishFrame(j, { t: 'world', d: rec.bytes })
  }

  private ownsParcelIn (space: string, did: string): boolean {
    for (const p of this.c.parcels(space)) if (p.owner === did) return true
    return false
  }

  /** The rights world updates are judged by; `formerEditor` is an author whose rights were revoked after the update. */
  private editContext (j: Joined, formerEditor?: string): EditContext {
    const space = j.d.id
    const parcels = this.c.parcels
    const editors = new Set(j.policy.editors)
    if (formerEditor != null) editors.add(formerEditor)
    return {
      owner: j.d.owner,
      editors,
      bounds: { minX: 0, maxX: j.d.grid.width, minZ: 0, maxZ: j.d.grid.depth },
      parcelOwnerAt: (x: number, z: number) => {
        for (const p of parcels(space)) {
          if (x >= p.x && x < p.x + p.w && z >= p.y && z < p.y + p.h) return p.owner
        }
        return undefined
      }
    }
  }

  // -- the owner's policy ------------------------------------------------------------------------

  /** Changes the policy (owner only): editors, moderation, members of a private space. */
  async setPolicy (id: string, change: {
    addEditors?: string[], removeEditors?: string[],
    ban?: string[], unban?: string[], mute?: string[], unmute?: string[],
    kick?: string[], kickMs?: number,
    addMembers?: string[], removeMembers?: string[]
  }): Promise<PolicyPayload> {
    const j = this.need(id)
    if (j.d.owner !== this.did) throw new NotSpaceOwnerError('only the owner changes a space\'s policy')
    // One change at a time per space: two at once would sign the same seq.
    return await this.locks.run(`policy/${id}`, async () => await this.changePolicy(j, change))
  }

  private async changePolicy (j: Joined, change: Parameters<SpaceService['setPolicy']>[1]): Promise<PolicyPayload> {
    const id = j.d.id
    for (const list of Object.values(change)) {
      if (Array.isArray(list)) for (const did of list) if (!isDid(did)) throw new InvalidSpaceRequestError(`not a did:key: ${String(did)}`)
    }
    const p = j.policy
    const edit = (list: string[], add?: string[], remove?: string[]): string[] => {
      const s = new Set(list)
      for (const d of add ?? []) if (d !== j.d.owner) s.add(d)
      for (const d of remove ?? []) s.delete(d)
      return [...s]
    }
    const now = Date.now()
    const kicked: Record<string, number> = {}
    for (const [did, until] of Object.entries(p.kicked)) if (until > now) kicked[did] = until
    for (const did of change.kick ?? []) if (did !== j.d.owner) kicked[did] = now + (change.kickMs ?? DEFAULT_KICK_MS)
    // Whoever loses rights keeps the edits made before: up to the clock we hold of theirs.
    const revoked = { ...p.revoked }
    const held = decodeStateVector(j.world.stateVector())
    for (const did of [...(change.removeEditors ?? []), ...(change.ban ?? []), ...(change.kick ?? []), ...(change.removeMembers ?? [])]) {
      const clock = held.get(clientIdForDid(did)) ?? 0
      if (clock > 0 && did !== j.d.owner) revoked[did] = Math.max(revoked[did] ?? 0, clock)
    }
    const next: PolicyPayload = {
      space: id,
      seq: p.seq + 1,
      editors: edit(p.editors, change.addEditors, change.removeEditors),
      banned: edit(p.banned, change.ban, change.unban),
      muted: edit(p.muted, change.mute, change.unmute),
      kicked,
      revoked,
      members: j.d.private ? edit(p.members, change.addMembers, [...(change.removeMembers ?? []), ...(change.ban ?? [])]) : []
    }
    const policy = await createPolicy(this.c.key, j.d, next)
    // The new key envelope is made before anything is stored, so a failure leaves nothing half done.
    let envelope: { epoch: number, bytes: Uint8Array } | undefined
    if (j.d.private) {
      const removed = p.members.filter(m => !policy.members.includes(m))
      const added = policy.members.filter(m => !p.members.includes(m))
      if (removed.length > 0 || added.length > 0) {
        // Removing a member rotates the key; adding one reseals the current key to everyone.
        const epoch = removed.length > 0 ? j.epoch + 1 : j.epoch
        const key = removed.length > 0 ? randomBytes(32) : j.keys.get(j.epoch) ?? randomBytes(32)
        envelope = { epoch, bytes: await this.makeEnvelope(j.d, epoch, key, policy.members) }
      }
    }
    await this.store.put('p', id, policy.bytes, true)
    if (envelope != null) await this.storeEnvelope(id, envelope.epoch, envelope.bytes)
    this.applyPolicy(j, policy)
    if (envelope != null) this.acceptEnvelope(j, envelope.bytes)
    await this.publishFrame(j, { t: 'policy', d: policy.bytes }, true)
    if (envelope != null) await this.publishFrame(j, { t: 'keys', d: envelope.bytes }, true)
    return next
  }

  private async makeEnvelope (d: Descriptor, epoch: number, key: Uint8Array, members: string[]): Promise<Uint8Array> {
    const env = await createKeyEnvelope(this.c.key, d.id, epoch, key, members)
    return env.bytes
  }

  private async storeEnvelope (id: string, epoch: number, bytes: Uint8Array): Promise<void> {
    await this.store.put('k', `${id}/${epoch}`, bytes, true)
  }

  /** Opens an envelope sealed to us; returns whether it gave us a key. */
  private acceptEnvelope (j: Joined, bytes: Uint8Array): boolean {
    try {
      const { epoch, groupKey } = openKeyEnvelope(this.c.key, this.did, bytes, j.d.owner, j.d.id)
      j.keys.set(epoch, groupKey)
      j.envelopes.set(epoch, bytes)
      if (epoch > j.epoch) j.epoch = epoch
      while (j.envelopes.size > MAX_KEY_EPOCHS) {
        const oldest = Math.min(...j.envelopes.keys())
        j.envelopes.delete(oldest)
      }
      return true
    } catch (err) {
      if ((err as Error).name === 'NotAMemberError') j.removed = true
      return false
    }
  }

  private async takeEnvelope (d: Descriptor, bytes: Uint8Array): Promise<void> {
    const j = this.joined.get(d.id)
    let epoch: number
    try {
      ({ epoch } = openKeyEnvelope(this.c.key, this.did, bytes, d.owner, d.id))
    } catch (err) {
      if ((err as Error).name === 'NotAMemberError' && j != null) j.removed = true
      return
    }
    await this.storeEnvelope(d.id, epoch, bytes)
    if (j != null) this.acceptEnvelope(j, bytes)
  }

  private async takePolicy (d: Descriptor, bytes: Uint8Array): Promise<void> {
    const policy = verifyPolicy(bytes, d)
    const j = this.joined.get(d.id)
    const held = await this.store.get('p', d.id)
    const current = j?.policy.seq ?? (held == null ? 0 : verifyPolicy(held, d).seq)
    if (policy.seq <= current) return
    await this.store.put('p', d.id, bytes)
    if (j != null) this.applyPolicy(j, policy)
  }

  private applyPolicy (j: Joined, policy: PolicyPayload): void {
    j.policy = policy
    const now = Date.now()
    for (const [did, m] of j.members) {
      if (isExcluded(j.d, policy, did, now)) this.dropMember(j, did, m.peer)
    }
    if (isExcluded(j.d, policy, this.did, now)) j.removed = true
    this.events.onPolicy?.(j.d.id, policy)
  }

  // -- gossip ------------------------------------------------------------------------------------

  private async publishFrame (j: Joined, frame: GossipFrame, clear = false): Promise<void> {
    let out = frame
    if (j.d.private && !clear) {
      const key = j.keys.get(j.epoch)
      if (key == null) throw new NotAMemberError('no group key for this space')
      out = { t: 'x', d: encryptGroup(key, j.epoch, dagCbor.encode(frame), aad(j.d.id, 'gossip')) }
    }
    await this.c.publish(spaceTopic(j.d.id), dagCbor.encode(out)).catch(err => {
      // No peer in the space yet is not an error for a member alone in it.
      if (!/NoPeersSubscribedToTopic|PublishError/.test(String((err as Error).message ?? err))) throw err
    })
  }

  /** A gossip message on a space topic. */
  async onGossip (topic: string, from: string, data: Uint8Array): Promise<void> {
    const id = topic.slice('peerverse/space/1/'.length)
    const j = this.joined.get(id)
    if (j == null) return
    if (data.length > MAX_SPACE_GOSSIP_BYTES) {
      this.events.onRejected?.(from, 'gossip:' + topic, new InvalidSpaceRequestError(`space message over ${MAX_SPACE_GOSSIP_BYTES} bytes`))
      return
    }
    try {
      let frame = decodeFrame(data)
      if (frame.t === 'x') {
        const { plaintext } = decryptGroup(e => j.keys.get(e), frame.d, aad(id, 'gossip'))
        frame = decodeFrame(plaintext)
        if (frame.t === 'x') throw new InvalidSpaceRequestError('nested sealed frame')
      } else if (j.d.private && frame.t !== 'policy' && frame.t !== 'keys') {
        throw new InvalidSpaceRequestError(`a private space takes ${frame.t} only sealed`)
      }
      await this.ingest(j, frame.t, frame.d, from, false)
    } catch (err) {
      this.events.onRejected?.(from, 'gossip:' + topic, err as Error)
    }
  }

  /** Takes one record of a kind, from gossip or from a sync answer. */
  private async ingest (j: Joined, kind: GossipFrame['t'], bytes: Uint8Array, from: string, synced: boolean): Promise<void> {
    const id = j.d.id
    const now = Date.now()
    if (synced && j.d.private && kind !== 'policy' && kind !== 'keys') {
      const frame = decodeFrame(bytes)
      if (frame.t !== 'x') throw new InvalidSpaceRequestError('a private space syncs only sealed records')
      bytes = decryptGroup(e => j.keys.get(e), frame.d, aad(id, 'sync')).plaintext
    }
    switch (kind) {
      case 'beacon': {
        const b = verifyBeacon(bytes, id, now)
        if (b.author === this.did) return
        if (isExcluded(j.d, j.policy, b.author, now)) throw new ExcludedError(`${b.author} is kept out of ${id}`)
        if (b.peer !== from) throw new InvalidSpaceRequestError(`beacon names peer ${b.peer} but came from ${from}`)
        if (b.ts < now - MAX_BEACON_AGE_MS) throw new InvalidSpaceRequestError('a stale beacon')
        if (!this.beaconBuckets.take(from)) throw new SpaceRateLimitError(`more than ${BEACONS_PER_PEER_PER_SECOND} beacons a second`)
        if (!j.members.has(b.author) && j.members.size >= MAX_ROSTER_MEMBERS) throw new SpaceRateLimitError(`space roster holds ${MAX_ROSTER_MEMBERS} members`)
        this.seeBeacon(j, b)
        return
      }
      case 'bye': {
        const b = verifyBye(bytes, id, now)
        if (b.ts < now - MAX_BEACON_AGE_MS) throw new InvalidSpaceRequestError('a stale leaving notice')
        const m = j.members.get(b.author)
        if (m != null && m.beaconTs > 0 && b.ts >= m.beaconTs) this.dropMember(j, b.author, m.peer)
        return
      }
      case 'presence': {
        // Interest management off: every frame goes to the whole space over gossip.
        const did = [...j.members.values()].find(m => m.peer === from)?.did
        if (did == null) return
        this.takePresence(j, did, from, bytes)
        return
      }
      case 'chat': {
        const chat = verifyChat(bytes, id, now)
        if (isExcluded(j.d, j.policy, chat.author, now)) throw new ExcludedError(`${chat.author} is kept out of ${id}`)
        if (j.policy.muted.includes(chat.author)) throw new ExcludedError(`${chat.author} is muted in ${id}`)
        if (j.chatIds.has(chat.id)) return
        if (!synced && !this.chatBuckets.take(`${id}/${chat.author}`)) throw new SpaceRateLimitError(`${chat.author} sends more than ${CHAT_PER_SECOND} chat messages a second`)
        // Older than the whole history we keep: nothing to store or show.
        if (!this.addChatLocal(j, chat)) return
        await this.store.addChat(id, chat.ts, chat.id, chat.bytes)
        this.events.onChat?.(id, chatView(chat))
        return
      }
      case 'world': {
        const rec = verifyWorldRecord(bytes, id)
        // An update made before the owner took its author's rights away is judged as made then.
        const before = (j.policy.revoked[rec.author] ?? 0) >= decodeWorldUpdate(rec.update).clockEnd
        if (!before && isExcluded(j.d, j.policy, rec.author, now)) throw new ExcludedError(`${rec.author} is kept out of ${id}`)
        if (!synced && !this.worldBuckets.take(`${id}/${rec.author}`)) throw new SpaceRateLimitError(`${rec.author} sends more than ${WORLD_UPDATES_PER_SECOND} world updates a second`)
        const ctx = this.editContext(j, before ? rec.author : undefined)
        // Someone who may edit nothing here gets no room in the queue of updates awaiting others.
        if (rec.author !== ctx.owner && !ctx.editors.has(rec.author) && !this.ownsParcelIn(id, rec.author)) {
          throw new EditNotAllowedError(`${rec.author} is neither owner nor editor of ${id} and owns no parcel in it`, '')
        }
        const result = j.world.offer(rec.id, rec.author, rec.update, ctx)
        const byId = new Map([[rec.id, rec.bytes]])
        for (const held of (this.heldWorld.get(id) ?? new Map<string, { id: string, bytes: Uint8Array }>()).values()) byId.set(held.id, held.bytes)
        for (const a of result.accepted) {
          const recBytes = byId.get(a.id)
          this.heldWorld.get(id)?.delete(a.id)
          if (recBytes == null) continue
          await this.store.addWorld(id, recBytes)
          j.worldRecords.push({ client: a.applied.client, clockStart: a.applied.clockStart, clockEnd: a.applied.clockEnd, bytes: recBytes })
          this.events.onWorld?.(id, { author: verifyWorldRecord(recBytes, id).author, objects: a.applied.objects })
        }
        for (const dropped of [...result.dropped, ...result.rejected.map(r => r.id)]) this.heldWorld.get(id)?.delete(dropped)
        if (result.held.includes(rec.id)) this.holdWorld(id, rec.id, rec.bytes)
        const mine = result.rejected.find(r => r.id === rec.id)
        if (mine != null) throw mine.error
        return
      }
      case 'policy':
        await this.takePolicy(j.d, bytes)
        return
      case 'keys':
        await this.takeEnvelope(j.d, bytes)
        return
      default:
        throw new InvalidSpaceRequestError(`unknown frame kind ${String(kind)}`)
    }
  }

  /** Records waiting on earlier ones, by space (World.offer holds the updates, we the signed bytes). */
  private readonly heldWorld = new Map<string, Map<string, { id: string, bytes: Uint8Array }>>()

  private holdWorld (space: string, id: string, bytes: Uint8Array): void {
    let m = this.heldWorld.get(space)
    if (m == null) { m = new Map(); this.heldWorld.set(space, m) }
    m.set(id, { id, bytes })
    while (m.size > 256) m.delete(m.keys().next().value as string)
  }

  /** Adds a message to the history in (ts, id) order; false when it is a duplicate or older than all we keep. */
  private addChatLocal (j: Joined, chat: Chat): boolean {
    if (j.chatIds.has(chat.id)) return false
    if (j.chat.length >= MAX_CHAT_HISTORY && (chat.ts < j.chat[0].ts || (chat.ts === j.chat[0].ts && chat.id < j.chat[0].id))) return false
    j.chatIds.add(chat.id)
    // Kept in (ts, id) order; most arrive in order, so insert from the end.
    let i = j.chat.length
    while (i > 0 && (j.chat[i - 1].ts > chat.ts || (j.chat[i - 1].ts === chat.ts && j.chat[i - 1].id > chat.id))) i--
    j.chat.splice(i, 0, chat)
    while (j.chat.length > MAX_CHAT_HISTORY) j.chatIds.delete(j.chat.shift()!.id)
    return true
  }

  // -- presence ----------------------------------------------------------------------------------

  private seeBeacon (j: Joined, b: { author: string, peer: string, addrs: string[], name: string, avatar: string, position: [number, number, number], rotation: [number, number, number, number], ts: number }): void {
    const now = Date.now()
    let m = j.members.get(b.author)
    if (m != null && b.ts < m.beaconTs) return
    if (m == null) {
      m = { did: b.author, peer: b.peer, name: b.name, avatar: b.avatar, position: b.position, rotation: b.rotation, near: false, moving: false, seenAt: now, time: b.ts, addrs: b.addrs, track: new PresenceTrack(), beaconTs: b.ts }
      j.members.set(b.author, m)
    } else {
      if (m.peer !== b.peer) { this.closeOut(j, m.peer); m.track = new PresenceTrack() }
      m.peer = b.peer
      m.addrs = b.addrs
      m.name = b.name
      m.avatar = b.avatar
      m.beaconTs = b.ts
      m.seenAt = now
      // A beacon's position only counts for members whose frames we do not get.
      if (!m.near) { m.position = b.position; m.rotation = b.rotation; m.time = b.ts }
    }
    j.interest.update(b.author, m.position[0], m.position[2], now)
    this.events.onPresence?.(j.d.id, viewOf(m))
  }

  private takePresence (j: Joined, did: string, peer: string, bytes: Uint8Array): void {
    const m = j.members.get(did)
    let frame = bytes
    if (j.d.private) frame = decryptGroup(e => j.keys.get(e), bytes, aad(j.d.id, 'presence')).plaintext
    const p = decodePresence(frame)
    const now = Date.now()
    if (m == null) {
      // First contact over a stream, before any beacon: a full frame tells us enough.
      if (p.kind !== 'full') return
      const fresh: Member = { did, peer, name: p.name, avatar: p.avatar ?? '', position: p.position, rotation: p.rotation, near: true, moving: p.moving === true, seenAt: now, time: p.time, addrs: [], track: new PresenceTrack(), beaconTs: 0 }
      fresh.track.accept(p, now)
      j.members.set(did, fresh)
      j.interest.update(did, p.position[0], p.position[2], now)
      this.events.onPresence?.(j.d.id, viewOf(fresh))
      return
    }
    if (!m.track.accept(p, now)) return
    m.position = p.position
    m.rotation = p.rotation
    m.moving = p.moving === true
    m.seenAt = now
    m.time = p.time
    if (p.kind === 'full') { m.name = p.name; m.avatar = p.avatar ?? '' }
    j.interest.update(did, p.position[0], p.position[2], now)
    this.events.onPresence?.(j.d.id, viewOf(m))
  }

  private dropMember (j: Joined, did: string, peer: string): void {
    if (!j.members.delete(did)) return
    j.interest.remove(did)
    this.closeOut(j, peer)
    for (const s of j.inbound.get(peer) ?? []) s.abort(new ExcludedError('gone from the space'))
    j.inbound.delete(peer)
    this.events.onLeave?.(j.d.id, did)
  }

  who (id: string): MemberView[] {
    const j = this.need(id)
    const me: MemberView = { did: this.did, peer: this.net.peerId.toString(), name: j.me.name, avatar: j.me.avatar, position: j.me.position, rotation: j.me.rotation, near: true, moving: Date.now() - j.me.lastMoveAt < MOVING_GRACE_MS, seenAt: Date.now(), time: Date.now() }
    return [me, ...[...j.members.values()].map(viewOf)]
  }

  /** The periodic work of every space we are in: expiry, interest, presence frames and beacons. */
  private tick (): void {
    const now = Date.now()
    for (const j of this.joined.values()) {
      try {
        this.tickSpace(j, now)
      } catch (err) {
        log.error('space tick %s: %s', j.d.id, (err as Error).message)
      }
    }
  }

  private tickSpace (j: Joined, now: number): void {
    if (now - j.sweptAt >= SWEEP_INTERVAL_MS) {
      j.sweptAt = now
      const gone = goneAfter(j.members.size + 1)
      for (const [did, m] of j.members) {
        if (now - m.seenAt > (m.near ? MEMBER_TIMEOUT_MS : gone) || isExcluded(j.d, j.policy, did, now)) this.dropMember(j, did, m.peer)
      }
    }
    if (j.removed) return
    const moving = now - j.me.lastMoveAt < MOVING_GRACE_MS
    if (now - j.me.lastBeaconAt >= beaconInterval(moving, j.members.size + 1)) {
      j.me.lastBeaconAt = now
      void this.sendBeacon(j).catch(() => {})
    }
    const due = now - j.me.lastFrameAt >= (moving ? MOVE_INTERVAL_MS : STILL_HEARTBEAT_MS) - 2
    if (!this.interestOn) {
      if (due && j.members.size > 0) {
        j.me.lastFrameAt = now
        const frame = this.presenceFrame(j, 'full', moving)
        void this.publishFrame(j, { t: 'presence', d: frame }).catch(() => {})
      }
      return
    }
    if (due) this.sendFrames(j, now, moving)
  }

  /** Sends our presence to the members near us (recomputed now), each on its stream. */
  private sendFrames (j: Joined, now: number, moving: boolean): void {
    const { near, entered, left } = j.interest.near(now)
    for (const did of left) {
      const m = j.members.get(did)
      if (m != null) { m.near = false; this.closeOut(j, m.peer) }
    }
    for (const did of entered) {
      const m = j.members.get(did)
      if (m != null) m.near = true
    }
    j.me.lastFrameAt = now
    let full: Uint8Array | undefined
    let move: Uint8Array | undefined
    for (const did of near) {
      const m = j.members.get(did)
      if (m == null) continue
      const o = this.outbound(j, m.peer)
      if (o.busy || o.write == null) continue
      let frame: Uint8Array
      // A full frame (name, avatar) on first contact and after a change of look; move frames otherwise.
      if (!o.sentFull) frame = full ??= this.presenceFrame(j, 'full', moving)
      else frame = move ??= this.presenceFrame(j, 'move', moving)
      o.sentFull = true
      o.busy = true
      o.lastSentAt = now
      o.write(frame).then(() => { o.busy = false }, () => { o.busy = false; this.closeOut(j, m.peer) })
    }
  }

  private presenceFrame (j: Joined, kind: 'full' | 'move', moving: boolean): Uint8Array {
    j.me.seq = (j.me.seq + 1) >>> 0
    const base = { seq: j.me.seq, time: Date.now(), position: j.me.position, rotation: j.me.rotation, moving }
    const p: Presence = kind === 'full' ? { ...base, kind, name: j.me.name, avatar: j.me.avatar === '' ? null : j.me.avatar } : { ...base, kind }
    const bytes = encodePresence(p)
    if (!j.d.private) return bytes
    const key = j.keys.get(j.epoch)
    if (key == null) throw new NotAMemberError('no group key')
    return encryptGroup(key, j.epoch, bytes, aad(j.d.id, 'presence'))
  }

  private async sendBeacon (j: Joined): Promise<void> {
    const b = await createBeacon(this.c.key, {
      space: j.d.id,
      peer: this.net.peerId.toString(),
      addrs: this.net.getMultiaddrs().slice(0, 8).map(a => a.toString()).filter(a => a.length <= 256),
      name: j.me.name,
      avatar: j.me.avatar,
      position: j.me.position,
      rotation: j.me.rotation,
      ts: Date.now()
    })
    await this.publishFrame(j, { t: 'beacon', d: b.bytes })
  }

  /** The stream we send presence to `peer` on, opened in the background on first use. */
  private outbound (j: Joined, peer: string): Outbound {
    let o = j.out.get(peer)
    if (o != null) return o
    const fresh: Outbound = { busy: false, sentFull: false, lastSentAt: 0, closed: false }
    o = fresh
    j.out.set(peer, fresh)
    fresh.opening = (async () => {
      // Connected already: that connection. Otherwise the addresses from the member's beacon (kept
      // with the member, not in the peer store, so made-up beacons cannot fill it).
      const id = peerIdFromString(peer)
      const addrs = this.net.getConnections(id).length > 0 ? [] : dialAddrs([...j.members.values()].find(m => m.peer === peer)?.addrs ?? [], peer)
      const stream = await this.net.dialProtocol(addrs.length > 0 ? addrs : id, PRESENCE_PROTOCOL, { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS), runOnLimitedConnection: true })
      if (fresh.closed) { stream.abort(new Error('closed')); return }
      const lp = lpStream(stream, { maxDataLength: MAX_PRESENCE_FRAME_BYTES + 64 })
      await lp.write(dagCbor.encode({ space: j.d.id, binding: this.c.binding }))
      fresh.stream = stream
      fresh.write = async bytes => { await lp.write(bytes) }
    })().catch(err => {
      log('presence stream to %s: %s', peer, (err as Error).message)
      // Retry on a later tick, not at once.
      setTimeout(() => { if (j.out.get(peer) === fresh) j.out.delete(peer) }, STILL_HEARTBEAT_MS).unref?.()
    })
    return fresh
  }

  private closeOut (j: Joined, peer: string): void {
    const o = j.out.get(peer)
    if (o == null) return
    o.closed = true
    j.out.delete(peer)
    void o.stream?.close().catch(() => {})
  }

  /** Presence frames from one peer for one space. */
  private async receivePresence (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: Math.max(MAX_PRESENCE_FRAME_BYTES + 64, 2048) })
    let j: Joined | undefined
    try {
      const open = dagCbor.decode((await lp.read({ signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })).subarray()) as { space?: unknown, binding?: unknown }
      if (open == null || typeof open.space !== 'string' || !(open.binding instanceof Uint8Array)) throw new InvalidSpaceRequestError('presence stream must open with space and binding')
      j = this.joined.get(open.space)
      if (j == null) throw new NotJoinedError(`not in space ${open.space}`)
      const { did } = await verifyPeerBinding(open.binding, peer)
      if (isExcluded(j.d, j.policy, did, Date.now())) throw new ExcludedError(`${did} is kept out of the space`)
      let set = j.inbound.get(peer)
      if (set == null) { set = new Set(); j.inbound.set(peer, set) }
      if (set.size >= MAX_PRESENCE_STREAMS_PER_PEER) throw new SpaceRateLimitError(`more than ${MAX_PRESENCE_STREAMS_PER_PEER} presence streams from one peer`)
      set.add(stream)
      const buckets = new TokenBuckets(PRESENCE_FRAMES_PER_SECOND, PRESENCE_FRAMES_PER_SECOND)
      try {
        while (true) {
          let frame: Uint8Array
          try {
            frame = (await lp.read()).subarray()
          } catch (err) {
            if ((err as Error).name === 'UnexpectedEOFError') break
            throw err
          }
          if (!buckets.take('f')) throw new SpaceRateLimitError(`more than ${PRESENCE_FRAMES_PER_SECOND} presence frames a second`)
          this.takePresence(j, did, peer, frame)
        }
      } finally {
        set.delete(stream)
        if (set.size === 0) j.inbound.delete(peer)
      }
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      const e = err as Error
      if (e.name !== 'StreamResetError' && e.name !== 'AbortError') this.events.onRejected?.(peer, PRESENCE_PROTOCOL, e)
    }
  }

  // -- sync protocol -----------------------------------------------------------------------------

  private async request (peer: PeerId, req: SyncRequest, onFrame: (bytes: Uint8Array) => Promise<boolean>): Promise<void> {
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS * 2)
    const stream = await this.net.dialProtocol(peer, SPACE_PROTOCOL, { signal, runOnLimitedConnection: true })
    const lp = lpStream(stream, { maxDataLength: MAX_SYNC_FRAME_BYTES })
    try {
      await lp.write(dagCbor.encode(req), { signal })
      while (true) {
        let frame: Uint8Array
        try {
          frame = (await lp.read({ signal })).subarray()
        } catch (err) {
          if ((err as Error).name === 'UnexpectedEOFError') break
          throw err
        }
        try {
          if (!await onFrame(frame)) break
        } catch (err) {
          this.events.onRejected?.(peer.toString(), SPACE_PROTOCOL, err as Error)
        }
      }
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS * 2)
    const lp = lpStream(stream, { maxDataLength: MAX_SYNC_REQUEST_BYTES })
    try {
      if (!this.syncBuckets.take(peer)) throw new SpaceRateLimitError(`more than ${SYNC_REQUESTS_PER_SECOND} space requests a second`)
      const req = parseSyncRequest((await lp.read({ signal })).subarray())
      const j = this.joined.get(req.space)
      if (req.op === 'get') {
        const d = await this.store.get('s', req.space)
        if (d != null) {
          const keys: Uint8Array[] = []
          if (j != null) keys.push(...[...j.envelopes.entries()].sort((a, b) => a[0] - b[0]).slice(-MAX_GET_ENVELOPES).map(e => e[1]))
          await lp.write(dagCbor.encode({ descriptor: d, policy: await this.store.get('p', req.space) ?? null, keys }), { signal })
        }
      } else if (j != null && !j.removed) {
        const seal = (bytes: Uint8Array): Uint8Array => {
          if (!j.d.private) return bytes
          const key = j.keys.get(j.epoch)
          if (key == null) throw new NotAMemberError('no group key')
          return dagCbor.encode({ t: 'x', d: encryptGroup(key, j.epoch, bytes, aad(j.d.id, 'sync')) })
        }
        const records = req.op === 'chat'
          ? j.chat.map(c => c.bytes)
          : World.needed(req.sv, j.worldRecords).slice(0, MAX_SYNC_WORLD_RECORDS).map(r => r.bytes)
        // Sealed a chunk at a time, as sent, and no more than MAX_SYNC_ANSWER_BYTES in all.
        let sent = 0
        for (let i = 0; i < records.length && sent < MAX_SYNC_ANSWER_BYTES; i += 64) {
          const chunk = records.slice(i, i + 64).map(seal)
          sent += chunk.reduce((n, b) => n + b.length, 0)
          await lp.writeV(chunk, { signal })
        }
      }
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      const e = err as Error
      if (e instanceof InvalidSpaceRequestError || e instanceof SpaceRateLimitError || e.name === 'InvalidDataLengthError' || e.name === 'MalformedUpdateError') {
        this.events.onRejected?.(peer, SPACE_PROTOCOL, e)
      }
    }
  }

  // -- views -------------------------------------------------------------------------------------

  spaces (): SpaceView[] {
    return [...this.joined.keys()].map(id => this.view(id))
  }

  isJoined (id: string): boolean { return this.joined.has(id) }

  view (id: string): SpaceView {
    const j = this.need(id)
    const { space: _space, ...policy } = j.policy
    return {
      id,
      name: j.d.name,
      owner: j.d.owner,
      grid: j.d.grid,
      private: j.d.private,
      created: j.d.created,
      policy,
      members: j.members.size + 1,
      objects: j.world.objects().size
    }
  }

  /** The whole world document as one Yjs update (for tools and tests; peers sync signed records instead). */
  worldState (id: string): Uint8Array { return Y.encodeStateAsUpdate(this.need(id).world.doc) }

  /** Bytes of one held record kind, for tests and tools. */
  descriptorBytes (id: string): Uint8Array { return this.need(id).d.bytes }

  /** The group-key epoch we hold (private spaces; 0 for public). */
  epoch (id: string): number { return this.need(id).epoch }

  /** Whether the owner has removed us (we keep the history but get nothing new). */
  isRemoved (id: string): boolean { return this.need(id).removed }

  /** Members we send frequent presence to; for tests and the benchmark. */
  nearCount (id: string): number { return [...this.need(id).members.values()].filter(m => m.near).length }

  static readonly MAX_NEAR = MAX_NEAR_MEMBERS
}

/** A member's beacon addresses as dialable multiaddrs ending in its peer id (bad ones skipped). */
function dialAddrs (addrs: string[], peer: string): Multiaddr[] {
  const out: Multiaddr[] = []
  for (const a of addrs) {
    try {
      const ma = multiaddr(a)
      const named = ma.getComponents().find(c => c.name === 'p2p')?.value
      if (named != null && named !== peer) continue
      out.push(named == null ? ma.encapsulate(`/p2p/${peer}`) : ma)
    } catch {}
  }
  return out
}

/** Checks a display name and avatar given by the user; InvalidSpaceRequestError otherwise. */
function checkLook (look: { name?: string, avatar?: string }): void {
  if (look.name != null && (typeof look.name !== 'string' || look.name.length > MAX_NAME_LENGTH || /[\u0000-\u001f\u007f-\u009f]/u.test(look.name) || new TextEncoder().encode(look.name).length > MAX_DISPLAY_NAME_BYTES)) {
    throw new InvalidSpaceRequestError(`a display name is one line of at most ${MAX_DISPLAY_NAME_BYTES} bytes`)
  }
  if (look.avatar != null && look.avatar !== '') {
    try {
      CID.parse(look.avatar)
    } catch {
      throw new InvalidSpaceRequestError('avatar must be a CID')
    }
  }
}

function chatView (c: Chat): ChatView {
  return { id: c.id, author: c.author, text: c.text, ts: c.ts }
}

function viewOf (m: Member): MemberView {
  return { did: m.did, peer: m.peer, name: m.name, avatar: m.avatar, position: m.position, rotation: m.rotation, near: m.near, moving: m.moving, seenAt: m.seenAt, time: m.time }
}

const FRAME_KINDS = new Set(['beacon', 'bye', 'chat', 'world', 'policy', 'keys', 'presence', 'x'])

function decodeFrame (bytes: Uint8Array): GossipFrame {
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
  return { t: f.t, d: f.d }
}

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
