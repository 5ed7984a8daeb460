/**
 * The space capability's service: shared 3D places whose state lives with the peers in them. It
 * coordinates the parts, each with one job, and holds no rule of its own:
 *   membership.ts  finding (DHT, topic subscribers), joining and leaving spaces
 *   sync.ts        the sync protocol /peerverse/space/1.0.0 (descriptor, policy, keys, chat, world)
 *   presence.ts    presence as a pure model (what to send whom and when); streams.ts moves its bytes
 *   chat.ts        chat; edits.ts  world edits (world.ts: the rules); policy.ts  the owner's policy
 *                  and key envelopes (keyring.ts, crypto.ts)
 * Space-wide gossip (frames.ts) carries beacons, leaving notices, chat, world updates, policy and
 * key envelopes; the service hands each record to its part and reports what a part refuses.
 * Moderation is the owner's signed policy: every honest peer drops what the policy excludes.
 */
import { logger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { linkHolders, type Link } from '../net/links.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS } from '../net/limits.ts'
import type { GossipMessage, GossipPort, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import { SpaceBlocks, type SpaceSocial } from './blocks.ts'
import { SpaceChat, type ChatView, type Source } from './chat.ts'
import { SpaceEdits } from './edits.ts'
import { InvalidSpaceRequestError } from './errors.ts'
import { MAX_SPACE_GOSSIP_BYTES, openGossip, SPACE_TOPIC_PREFIX, spaceTopic, type FrameKind } from './frames.ts'
import { MAX_NEAR_MEMBERS, MOVING_INTERVAL_MS, type Quat, type Vec3 } from './interest.ts'
import { need, type Joined, type ParcelsOf, type SpaceCore, type SpaceEvents } from './joined.ts'
import { checkLook, MAX_JOINED_SPACES, SpaceMembership, type CreateOptions, type JoinOptions } from './membership.ts'
import { SpacePolicy, type PolicyChange } from './policy.ts'
import type { MemberView } from './presence.ts'
import type { Grid, PolicyPayload } from './records.ts'
import { isExcluded, parseSpaceId } from './records.ts'
import { decryptGroup, encryptGroup } from './crypto.ts'
import { spaceLink } from './share.ts'
import type { SpaceStore } from './store.ts'
import { PRESENCE_PROTOCOL, SpacePresence } from './streams.ts'
import { SPACE_PROTOCOL, SPACE_SYNC_INTERVAL_MS, SpaceSync } from './sync.ts'
import type { WorldObject, WorldObjectValue } from './world.ts'

const log = logger('peerverse:space')

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

export interface SpaceServiceInit {
  /** Interest management on (default) or off (everyone gets every frame, over gossip): for benchmarks. */
  interest?: boolean
  /** How long joining a space looks for a peer that has it (default JOIN_TIMEOUT_MS). */
  joinTimeoutMs?: number
}

export interface SpaceServiceComponents {
  gossip: GossipPort
  protocols: ProtocolPort
  routing: RoutingPort
  onRejected: RejectSink
  did: string
  key: Ed25519Key
  binding: Uint8Array
  store: SpaceStore
  parcels: ParcelsOf
  /** The user's blocks (social): a blocked member's chat and presence are out of the user's sight. */
  social?: SpaceSocial
}

export class SpaceService extends TypedEventEmitter<SpaceEvents> {
  readonly did: string
  readonly store: SpaceStore
  private readonly core: SpaceCore
  private readonly membership: SpaceMembership
  private readonly sync: SpaceSync
  private readonly presence: SpacePresence
  private readonly chats: SpaceChat
  private readonly edits: SpaceEdits
  private readonly policy: SpacePolicy
  private readonly blocks: SpaceBlocks
  private timer?: ReturnType<typeof setInterval>
  private syncTimer?: ReturnType<typeof setInterval>
  private stopSubscriptions?: () => void
  private started = false

  constructor (init: SpaceServiceInit, components: SpaceServiceComponents) {
    super()
    this.did = components.did
    this.store = components.store
    this.core = {
      did: components.did,
      key: components.key,
      binding: components.binding,
      store: components.store,
      gossip: components.gossip,
      protocols: components.protocols,
      routing: components.routing,
      parcels: components.parcels,
      reject: components.onRejected,
      joined: new Map(),
      emit: (type, detail) => { if (this.blocks.passes(type, detail)) this.safeDispatchEvent(type, { detail } as any) }
    }
    this.blocks = new SpaceBlocks(this.core, components.social)
    this.chats = new SpaceChat(this.core)
    this.presence = new SpacePresence(this.core, { interest: init.interest !== false }, (j, did) => this.chats.known(j, did))
    this.edits = new SpaceEdits(this.core)
    this.policy = new SpacePolicy(this.core, (j, did) => { this.presence.dropMember(j, did) })
    this.sync = new SpaceSync(this.core, this.policy, async (j, kind, bytes, from, synced, src) => { await this.ingest(j, kind, bytes, from, synced, src) })
    this.membership = new SpaceMembership(this.core, {
      sync: this.sync,
      policy: this.policy,
      chat: this.chats,
      edits: this.edits,
      presence: this.presence,
      onGossip: async m => { await this.onGossip(m) }
    }, { joinTimeoutMs: init.joinTimeoutMs })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    const { protocols } = this.core
    await protocols.handle(SPACE_PROTOCOL, this.sync.handler, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    await protocols.handle(PRESENCE_PROTOCOL, this.presence.receive, {
      maxInboundStreams: MAX_JOINED_SPACES,
      maxOutboundStreams: MAX_JOINED_SPACES,
      runOnLimitedConnection: true
    })
    this.timer = setInterval(() => { this.tick() }, MOVING_INTERVAL_MS / 2)
    this.timer.unref?.()
    this.syncTimer = setInterval(() => { this.sync.antiEntropy(spaceTopic) }, SPACE_SYNC_INTERVAL_MS)
    this.syncTimer.unref?.()
    // A peer that newly subscribes to one of our spaces (joined, or back from a partition) is synced with.
    this.stopSubscriptions = this.core.gossip.onSubscriptionChange((peer, topic, subscribed) => {
      if (!subscribed || !topic.startsWith(SPACE_TOPIC_PREFIX)) return
      const j = this.core.joined.get(topic.slice(SPACE_TOPIC_PREFIX.length))
      if (j != null) void this.sync.syncWith(j, peer).catch(err => { log('sync with new subscriber: %s', (err as Error).message) })
    })
    await this.membership.rejoin()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.timer)
    clearInterval(this.syncTimer)
    this.stopSubscriptions?.()
    this.stopSubscriptions = undefined
    for (const j of [...this.core.joined.values()]) await this.membership.leave(j, { forget: false })
    await this.core.protocols.unhandle(SPACE_PROTOCOL)
    await this.core.protocols.unhandle(PRESENCE_PROTOCOL)
  }

  // -- creating, joining, leaving ----------------------------------------------------------------

  /** Creates a space owned by us and joins it. */
  async create (options: CreateOptions): Promise<SpaceView> {
    return this.view(await this.membership.create(options))
  }

  /**
   * Joins a space by id: finds peers in it, fetches what we lack, and starts presence. `peers`
   * (a link's, at most MAX_LINK_PEERS; InvalidLinkError otherwise) are dialled and asked first;
   * what they answer is checked as any peer's answer.
   */
  async join (id: string, options: JoinOptions = {}): Promise<SpaceView> {
    parseSpaceId(id)
    checkLook(options)
    const holders = linkHolders(options.peers ?? [], this.core.protocols.peerId)
    if (this.core.joined.has(id)) {
      if (options.name != null || options.avatar != null) this.setLook(id, options)
      return this.view(id)
    }
    await this.membership.open(id, options.name ?? '', options.avatar ?? '', { signal: options.signal, holders })
    return this.view(id)
  }

  /** The link of a space we are in: its id, our shareable addresses and a few other members'. */
  link (id: string): Link {
    return spaceLink(this.core, need(this.core, id))
  }

  async leave (id: string): Promise<void> {
    await this.membership.leave(need(this.core, id), { forget: true })
  }

  // -- what a member does ------------------------------------------------------------------------

  /** Our position and rotation in a space (the client calls this as we move, up to 20 Hz). */
  move (id: string, position: Vec3, rotation: Quat = [0, 0, 0, 1]): void {
    this.presence.move(need(this.core, id), position, rotation)
  }

  setLook (id: string, look: { name?: string, avatar?: string }): void {
    const j = need(this.core, id)
    checkLook(look)
    this.presence.setLook(j, look)
    const me = j.presence.me
    void this.store.setMembership(id, { name: me.name, avatar: me.avatar, joined: Date.now() }).catch(() => {})
  }

  async say (id: string, text: string): Promise<ChatView> {
    return await this.chats.say(need(this.core, id), text)
  }

  chat (id: string, options: { limit?: number } = {}): ChatView[] {
    return this.chats.list(need(this.core, id), options.limit, did => this.blocks.blocks(did))
  }

  objects (id: string): Array<WorldObject & { id: string }> {
    return this.edits.objects(need(this.core, id))
  }

  /** Places (or replaces) an object; returns its id. */
  async place (id: string, value: WorldObjectValue, objectId?: string): Promise<string> {
    return await this.edits.place(need(this.core, id), value, objectId)
  }

  async moveObject (id: string, objectId: string, transform: Partial<Pick<WorldObjectValue, 'position' | 'rotation' | 'scale'>>): Promise<void> {
    await this.edits.move(need(this.core, id), objectId, transform)
  }

  async removeObject (id: string, objectId: string): Promise<void> {
    await this.edits.remove(need(this.core, id), objectId)
  }

  /** Changes the policy (owner only): editors, moderation, members of a private space. */
  async setPolicy (id: string, change: PolicyChange): Promise<PolicyPayload> {
    return await this.policy.set(need(this.core, id), change)
  }

  // -- gossip ------------------------------------------------------------------------------------

  /** A gossip message on a space topic. */
  private async onGossip ({ topic, from, via, data }: GossipMessage): Promise<void> {
    const j = this.core.joined.get(topic.slice(SPACE_TOPIC_PREFIX.length))
    if (j == null) return
    if (data.length > MAX_SPACE_GOSSIP_BYTES) {
      this.core.reject(from, 'gossip:' + topic, new InvalidSpaceRequestError(`space message over ${MAX_SPACE_GOSSIP_BYTES} bytes`))
      return
    }
    try {
      const frame = openGossip(j, data)
      await this.ingest(j, frame.t, frame.d, from, false, { peer: from, via, proof: frame.w })
    } catch (err) {
      this.core.reject(from, 'gossip:' + topic, err as Error)
    }
  }

  /** Hands one record (unsealed) from gossip or a sync answer to its part. */
  private async ingest (j: Joined, kind: FrameKind, bytes: Uint8Array, from: string, synced: boolean, src?: Source): Promise<void> {
    const now = Date.now()
    switch (kind) {
      case 'beacon': this.presence.takeBeacon(j, bytes, from, now, src?.proof); return
      case 'bye': this.presence.takeBye(j, bytes, now); return
      case 'presence': this.presence.takeGossipFrame(j, from, bytes); return
      case 'chat': await this.chats.take(j, bytes, synced, now, src); return
      case 'world': await this.edits.take(j, bytes, synced, now, synced ? undefined : from); return
      case 'policy': await this.policy.takePolicy(j.d, bytes); return
      case 'keys': await this.policy.takeEnvelope(j.d, bytes); return
      default: throw new InvalidSpaceRequestError(`unknown frame kind ${String(kind)}`)
    }
  }

  /** The periodic work of every space we are in: expiry, interest, presence frames and beacons. */
  private tick (): void {
    const now = Date.now()
    for (const j of this.core.joined.values()) {
      try {
        this.presence.tick(j, now)
        this.blocks.refresh(j)
      } catch (err) {
        log.error('space tick %s: %s', j.d.id, (err as Error).message)
      }
    }
    this.blocks.retain(this.core.joined)
  }

  // -- views -------------------------------------------------------------------------------------

  spaces (): SpaceView[] {
    return [...this.core.joined.keys()].map(id => this.view(id))
  }

  isJoined (id: string): boolean { return this.core.joined.has(id) }

  view (id: string): SpaceView {
    const j = need(this.core, id)
    const { space: _space, ...policy } = j.policy
    return {
      id,
      name: j.d.name,
      owner: j.d.owner,
      grid: j.d.grid,
      private: j.d.private,
      created: j.d.created,
      policy,
      members: this.blocks.count(j),
      objects: j.edits.world.objects().size
    }
  }

  /** The members the user may see (ourselves first; never one the user blocked). */
  who (id: string): MemberView[] { return this.blocks.visible(this.presence.who(need(this.core, id))) }

  /** Members present in a space, ourselves included, blocked or not: a headcount (the directory's), not who the user sees. */
  headcount (id: string): number { return need(this.core, id).presence.members.size + 1 }

  /** The whole world document as one Yjs update (for tools and tests; peers sync signed records instead). */
  worldState (id: string): Uint8Array { return this.edits.state(need(this.core, id)) }

  /** Bytes of one held record kind, for tests and tools. */
  descriptorBytes (id: string): Uint8Array { return need(this.core, id).d.bytes }

  /** The group-key epoch we hold (private spaces; 0 for public). */
  epoch (id: string): number { return need(this.core, id).keys.epoch }

  /** Whether the owner has removed us (we keep the history but get nothing new). */
  isRemoved (id: string): boolean { return need(this.core, id).removed }

  /** Members we send frequent presence to; for tests and the benchmark. */
  nearCount (id: string): number { return [...need(this.core, id).presence.members.values()].filter(m => m.near).length }

  static readonly MAX_NEAR = MAX_NEAR_MEMBERS

  // -- read-only views for voice -------------------------------------------------------------------

  /** Our own position in a space. */
  me (id: string): { position: Vec3 } { return { position: [...need(this.core, id).presence.me.position] } }

  /** Whether the policy keeps `did` out (banned, kicked, not a member of a private space). */
  isExcluded (id: string, did: string): boolean {
    const j = need(this.core, id)
    return isExcluded(j.d, j.policy, did, Date.now())
  }

  /** Whether the owner's policy mutes `did`. */
  isOwnerMuted (id: string, did: string): boolean { return need(this.core, id).policy.muted.includes(did) }

  /**
   * Sealing under the space's group keys (the current epoch's to encrypt, any held to decrypt) in
   * a private space; undefined for a public one. The caller's aad is bound into each message.
   */
  cipher (id: string): { encrypt: (plaintext: Uint8Array, aad: Uint8Array) => Uint8Array, decrypt: (bytes: Uint8Array, aad: Uint8Array) => Uint8Array, epoch: () => number, key: (epoch: number) => Uint8Array | undefined } | undefined {
    const j = need(this.core, id)
    if (!j.d.private) return undefined
    const keys = j.keys
    return {
      encrypt: (plaintext, aad) => encryptGroup(keys.current(`no group key of ${id}`), keys.epoch, plaintext, aad),
      decrypt: (bytes, aad) => decryptGroup(e => keys.keys.get(e), bytes, aad).plaintext,
      // The epoch and its keys, from which voice derives each sender's own key (src/voice/seal.ts).
      epoch: () => keys.epoch,
      key: e => keys.keys.get(e)
    }
  }
}
