/**
 * Finding, joining and leaving spaces. A space's id is the CID of its signed descriptor; members
 * announce it in the DHT (as content providers), so anyone with the id finds peers in it: first
 * the connected subscribers of its topic, then the DHT's providers, then any connected peer. A join
 * fetches what it lacks (descriptor, policy, key envelopes) over the sync protocol, loads what is
 * held (keys, world, chat), subscribes to the space's gossip and pulls the rest from a few peers.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { SpaceChat } from './chat.ts'
import { solveAdmission, isAdmitted } from './admission.ts'
import { ChatHistory } from './chat.ts'
import { WorldLog, type SpaceEdits } from './edits.ts'
import { ExcludedError, InvalidSpaceRequestError, NotAMemberError, SpaceNotFoundError, TooManySpacesError } from './errors.ts'
import { spaceTopic } from './frames.ts'
import type { Joined, SpaceCore } from './joined.ts'
import { KeyRing, MAX_KEY_EPOCHS } from './keyring.ts'
import type { SpacePolicy } from './policy.ts'
import { createPresence } from './presence.ts'
import { MAX_DISPLAY_NAME_BYTES } from './presence-wire.ts'
import { createDescriptor, isExcluded, MAX_NAME_LENGTH, verifyDescriptor, type Grid } from './records.ts'
import { PresenceStreams, type SpacePresence } from './streams.ts'
import type { SpaceSync } from './sync.ts'
import type { LinkHolder } from '../net/links.ts'
import type { GossipMessage } from '../net/ports.ts'

const log = logger('peerverse:space')

/** Spaces one peer may be in at once. */
export const MAX_JOINED_SPACES = 64
/** Peers a join asks for the descriptor and history. */
export const MAX_SYNC_PEERS = 3
/** How long a join looks for a peer that has the space. */
export const JOIN_TIMEOUT_MS = 20_000
/** How long an announcement in the DHT may take. */
const ANNOUNCE_TIMEOUT_MS = 60_000
/** First and longest wait between rounds of looking for a peer with the space. */
const FETCH_RETRY_MS = 250
const FETCH_RETRY_MAX_MS = 4_000

export interface CreateOptions { name: string, grid?: Partial<Grid>, private?: boolean, displayName?: string, avatar?: string }
export interface JoinOptions {
  name?: string
  avatar?: string
  signal?: AbortSignal
  /** Peers a link names as holders of the space (multiaddrs ending in /p2p/<peer id>): asked first. */
  peers?: string[]
}

/** How a join opens a space: held only (at start), or fetched, from a link's peers first. */
interface OpenOptions { offline?: boolean, signal?: AbortSignal, holders?: LinkHolder[] }

/** Checks a display name and avatar given by the user; InvalidSpaceRequestError otherwise. */
export function checkLook (look: { name?: string, avatar?: string }): void {
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

export interface MembershipParts {
  sync: SpaceSync
  policy: SpacePolicy
  chat: SpaceChat
  edits: SpaceEdits
  presence: SpacePresence
  /** A gossip message on a joined space's topic. */
  onGossip: (message: GossipMessage) => Promise<void>
}

export class SpaceMembership {
  private readonly core: SpaceCore
  private readonly parts: MembershipParts
  private readonly opening = new Map<string, Promise<void>>()
  /** How long a join looks for a peer that has the space (default JOIN_TIMEOUT_MS). */
  private readonly joinTimeoutMs: number

  constructor (core: SpaceCore, parts: MembershipParts, options: { joinTimeoutMs?: number } = {}) {
    this.core = core
    this.parts = parts
    this.joinTimeoutMs = options.joinTimeoutMs ?? JOIN_TIMEOUT_MS
  }

  /** Creates a space owned by us and joins it. */
  async create (options: CreateOptions): Promise<string> {
    checkLook({ name: options.displayName, avatar: options.avatar })
    const d = await createDescriptor(this.core.key, options)
    await this.core.store.put('s', d.id, d.bytes, true)
    if (d.private) await this.parts.policy.founding(d)
    await this.open(d.id, options.displayName ?? '', options.avatar ?? '', { offline: true })
    return d.id
  }

  /** Rejoins the spaces we were in (at start). */
  async rejoin (): Promise<void> {
    for (const [id, m] of await this.core.store.memberships()) {
      try {
        await this.open(id, m.name, m.avatar, { offline: true })
      } catch (err) {
        log('could not rejoin %s: %s', id, (err as Error).message)
      }
    }
  }

  /** Opens a space once: a second open while the first runs waits for it. */
  async open (id: string, name: string, avatar: string, options: OpenOptions): Promise<void> {
    if (this.core.joined.has(id)) return
    const running = this.opening.get(id)
    if (running != null) return await running
    const run = this.doOpen(id, name, avatar, options).finally(() => { this.opening.delete(id) })
    this.opening.set(id, run)
    return await run
  }

  private async doOpen (id: string, name: string, avatar: string, options: OpenOptions): Promise<void> {
    const { store } = this.core
    if (this.core.joined.size + this.opening.size >= MAX_JOINED_SPACES) throw new TooManySpacesError(`already in ${MAX_JOINED_SPACES} spaces`)
    let stored = await store.get('s', id)
    if (stored == null) {
      if (options.offline === true) throw new SpaceNotFoundError(`space ${id} is not held here`)
      const holders = options.holders ?? []
      await this.fetchSpace(id, holders, options.signal)
      stored = await store.get('s', id)
      if (stored == null) {
        const tried = holders.length > 0 ? `the link's ${holders.length} peer${holders.length === 1 ? '' : 's'} (${holders.map(h => h.peer).join(', ')}), ` : ''
        throw new SpaceNotFoundError(`no peer has space ${id} (asked ${tried}the space's subscribers, the DHT's providers and connected peers)`)
      }
    }
    const d = verifyDescriptor(stored, id)
    const policy = await this.parts.policy.held(d)
    if (isExcluded(d, policy, this.core.did, Date.now())) {
      throw d.private && !policy.members.includes(this.core.did) ? new NotAMemberError(`not a member of private space ${id}`) : new ExcludedError(`the owner keeps you out of ${id}`)
    }
    const j: Joined = {
      d,
      policy,
      removed: false,
      keys: new KeyRing(id),
      chat: new ChatHistory(),
      edits: new WorldLog(),
      presence: createPresence(d.grid, name, avatar),
      streams: new PresenceStreams(),
      unsubscribe: () => {}
    }
    // Keys first (private spaces): the history is stored sealed under them, and what arrives is sealed.
    await this.parts.policy.loadKeys(j, MAX_KEY_EPOCHS)
    if (j.keys.keys.size > 0) j.removed = false
    if (d.private && j.keys.keys.size === 0) throw new NotAMemberError(`no key of private space ${id} is sealed to us`)
    await this.parts.edits.replay(j)
    await this.parts.chat.replay(j)
    // A public space we do not own hears us only with our admission proof: found once, kept.
    if (!d.private && d.owner !== this.core.did) j.admission = await this.admission(id, options.signal)
    this.core.joined.set(id, j)
    await store.setMembership(id, { name, avatar, joined: Date.now() })
    j.unsubscribe = this.core.gossip.subscribe(spaceTopic(id), this.parts.onGossip)
    void this.announce(id)
    void this.syncFromPeers(j, options.holders ?? []).catch(err => { log('sync of %s: %s', id, (err as Error).message) })
    void this.parts.presence.sendBeacon(j).catch(() => {})
  }

  /** Our admission proof for a space: the one stored, or a new one (stored for next time). */
  private async admission (id: string, signal?: AbortSignal): Promise<Uint8Array> {
    const stored = await this.core.store.get('a', id)
    if (stored != null) {
      try {
        const v = dagCbor.decode(stored) as { did?: unknown, nonce?: unknown }
        if (v.did === this.core.did && v.nonce instanceof Uint8Array && isAdmitted(id, this.core.did, v.nonce)) return v.nonce
      } catch {}
    }
    const nonce = await solveAdmission(id, this.core.did, { signal })
    await this.core.store.put('a', id, dagCbor.encode({ did: this.core.did, nonce }))
    return nonce
  }

  /** Leaves a space: a leaving notice, streams closed, topic left, membership forgotten. */
  async leave (j: Joined, options: { forget: boolean }): Promise<void> {
    await this.parts.presence.sayBye(j).catch(() => {})
    this.parts.presence.closeAll(j)
    this.core.joined.delete(j.d.id)
    j.unsubscribe()
    if (options.forget) await this.core.store.setMembership(j.d.id, null)
  }

  /** Announces that we are in the space (DHT provider record), so joiners find us. */
  private async announce (id: string): Promise<void> {
    try {
      await this.core.routing.provide(CID.parse(id), { signal: AbortSignal.timeout(ANNOUNCE_TIMEOUT_MS) })
    } catch (err) {
      log('announcing %s: %s', id, (err as Error).message)
    }
  }

  /**
   * Peers that may have the space: a link's peers (hints, trusted for nothing: their answers are
   * checked as anyone's), connected subscribers of its topic, then DHT providers.
   */
  private async * candidates (id: string, signal: AbortSignal, holders: LinkHolder[] = []): AsyncGenerator<string> {
    const seen = new Set<string>([this.core.protocols.peerId])
    for (const h of holders) {
      if (!seen.has(h.peer)) { seen.add(h.peer); yield h.peer }
    }
    for (const p of this.core.gossip.subscribers(spaceTopic(id))) {
      if (!seen.has(p)) { seen.add(p); yield p }
    }
    try {
      for await (const prov of this.core.routing.findProviders(CID.parse(id), { signal })) {
        if (seen.has(prov.peer)) continue
        seen.add(prov.peer)
        yield prov.peer
      }
    } catch (err) {
      if (!signal.aborted) log('finding providers of %s: %s', id, (err as Error).message)
    }
  }

  /**
   * Fetches the descriptor, policy and key envelopes of a space we do not hold: asks a link's
   * peers (dialled at the link's addresses, all at once and beside the rest, so an address that
   * never answers holds nothing up), the topic's subscribers, the DHT's providers, then the other
   * connected peers, and tries again (a provider record may still be on its way) until
   * the join deadline (JOIN_TIMEOUT_MS unless set).
   */
  private async fetchSpace (id: string, holders: LinkHolder[], outer?: AbortSignal): Promise<void> {
    const found = new AbortController()
    const signal = AbortSignal.any([found.signal, AbortSignal.timeout(this.joinTimeoutMs), ...(outer == null ? [] : [outer])])
    const asked = new Set<string>()
    const addresses = new Map(holders.map(h => [h.peer, h.addresses]))
    const ask = async (peer: string): Promise<boolean> => {
      asked.add(peer)
      try {
        return await this.parts.sync.getFrom(peer, id, addresses.get(peer))
      } catch (err) {
        log('get %s from %s: %s', id, peer, (err as Error).message)
        return false
      }
    }
    const askLinked = async (): Promise<void> => {
      const got = await Promise.all(holders.map(async h => await ask(h.peer)))
      if (got.includes(true)) found.abort()
    }
    for (let delay = FETCH_RETRY_MS; !signal.aborted; delay = Math.min(delay * 2, FETCH_RETRY_MAX_MS)) {
      const linked = askLinked()
      try {
        for await (const peer of this.candidates(id, signal)) {
          if (await ask(peer)) return
          if (signal.aborted) return
        }
        for (const peer of this.core.protocols.peers()) {
          if (signal.aborted) return
          if (asked.has(peer)) continue
          if (await ask(peer)) return
        }
      } finally {
        // What a linked peer answered is stored before the join reads it.
        await linked
      }
      if (signal.aborted) return
      asked.clear()
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, delay)
        signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
      })
    }
  }

  /** Pulls chat history and the world from a few peers in the space. */
  private async syncFromPeers (j: Joined, holders: LinkHolder[]): Promise<void> {
    const signal = AbortSignal.timeout(this.joinTimeoutMs)
    let n = 0
    for await (const peer of this.candidates(j.d.id, signal, holders)) {
      try {
        await this.parts.sync.syncWith(j, peer)
        n++
      } catch (err) {
        log('sync %s with %s: %s', j.d.id, peer, (err as Error).message)
      }
      if (n >= MAX_SYNC_PEERS || !this.core.joined.has(j.d.id)) break
    }
  }
}
