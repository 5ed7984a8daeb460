/**
 * Presence on the wire: our frames at up to 20 Hz to the members near us over direct,
 * authenticated streams (`/peerverse/space-presence/1.0.0`: one hop, no per-frame signature, the
 * stream bound to the sender's user key by its signed peer binding, a fan-out bounded by
 * MAX_NEAR_MEMBERS however many are in the space), and space-wide beacons and leaving notices over
 * gossip. What to send whom and when is the pure model's (presence.ts); this file only moves the
 * bytes, checks what arrives (rates, roster, replays) and keeps the streams.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { verifyPeerBinding } from '../identity/binding.ts'
import { framed, UnexpectedEOFError, type Framed } from '../net/framed.ts'
import { PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import type { RemotePeer } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { checkAdmission } from './admission.ts'
import { ExcludedError, InvalidSpaceRequestError, NotJoinedError, SpaceRateLimitError } from './errors.ts'
import { publishFrame } from './frames.ts'
import { MAX_PRESENCE_HZ, MAX_ROSTER_MEMBERS, STILL_HEARTBEAT_MS, type Quat, type Vec3 } from './interest.ts'
import type { Joined, Outbound, SpaceCore } from './joined.ts'
export { PresenceStreams } from './joined.ts'
import {
  applyBeacon, applyFrame, decide, encodeOwn, frameDue, memberOnPeer, planFrames, removeMember, selfView, setLook, setPose,
  streamClosed, sweep, viewOf, type FramePlan, type MemberView
} from './presence.ts'
import { MAX_PRESENCE_FRAME_BYTES } from './presence-wire.ts'
import { createBeacon, createBye, isExcluded, verifyBeacon, verifyBye } from './records.ts'

const log = logger('peerverse:space')

export const PRESENCE_PROTOCOL = '/peerverse/space-presence/1.0.0'
/** Frames per second a presence stream may carry (twice the fastest honest rate); past it the stream is closed. */
export const PRESENCE_FRAMES_PER_SECOND = MAX_PRESENCE_HZ * 2
/** Presence streams one peer may hold open to us at once. */
export const MAX_PRESENCE_STREAMS_PER_PEER = 4
/** Largest frame on a presence stream we send (a sealed presence frame). */
export const MAX_PRESENCE_STREAM_FRAME_BYTES = MAX_PRESENCE_FRAME_BYTES + 64
/** Largest frame on a presence stream we read (the opening {space, binding} is larger than a frame). */
export const MAX_PRESENCE_READ_BYTES = Math.max(MAX_PRESENCE_STREAM_FRAME_BYTES, 2048)
/** Beacons one peer may send per second (over all our spaces), and burst. */
export const BEACONS_PER_PEER_PER_SECOND = 2
export const BEACON_BURST = 8
/** A beacon or leaving notice older than this is a replay. */
export const MAX_BEACON_AGE_MS = 60_000
/** Addresses a beacon names at most, and the longest. */
const BEACON_ADDRS = 8
const MAX_BEACON_ADDR_LENGTH = 256

/** Checks a position and rotation from the user; InvalidSpaceRequestError otherwise. */
function checkPose (position: number[], rotation: number[]): void {
  if (position.length !== 3 || !position.every(Number.isFinite)) throw new InvalidSpaceRequestError('position must be 3 finite numbers')
  if (!(rotation.length === 4 && rotation.every(Number.isFinite) && Math.abs(Math.hypot(...rotation) - 1) < 1e-3)) throw new InvalidSpaceRequestError('rotation must be a unit quaternion')
}

/** A member's beacon addresses as dialable multiaddrs ending in its peer id (bad ones skipped). */
export function dialAddrs (addrs: string[], peer: string): string[] {
  const out: string[] = []
  for (const a of addrs) {
    try {
      const ma = multiaddr(a)
      const named = ma.getComponents().find(c => c.name === 'p2p')?.value
      if (named != null && named !== peer) continue
      out.push((named == null ? ma.encapsulate(`/p2p/${peer}`) : ma).toString())
    } catch {}
  }
  return out
}

export class SpacePresence {
  private readonly core: SpaceCore
  private readonly interest: boolean
  private readonly beaconBuckets = new TokenBuckets(BEACONS_PER_PEER_PER_SECOND, BEACON_BURST)
  /** Whether the space knows an author (chat.ts): its beacons need no admission proof, and find room in a full roster. */
  private readonly known: (j: Joined, did: string) => boolean

  constructor (core: SpaceCore, options: { interest: boolean }, known: (j: Joined, did: string) => boolean = () => false) {
    this.core = core
    this.interest = options.interest
    this.known = known
  }

  // -- what we do --------------------------------------------------------------------------------

  /** Our position and rotation (the client calls this as we move, up to 20 Hz); a move goes out at once when the rate allows. */
  move (j: Joined, position: Vec3, rotation: Quat): void {
    checkPose(position, rotation)
    const now = Date.now()
    setPose(j.presence, position, rotation, now)
    if (this.interest && !j.removed && frameDue(j.presence, true, now)) {
      try {
        this.sendFrames(j, planFrames(j.presence, now, peer => this.ready(j, peer)), true, now)
      } catch (err) {
        log.error('presence of %s: %s', j.d.id, (err as Error).message)
      }
    }
  }

  setLook (j: Joined, look: { name?: string, avatar?: string }): void {
    setLook(j.presence, look)
  }

  who (j: Joined): MemberView[] {
    return [selfView(j.presence, this.core.did, this.core.protocols.peerId, Date.now()), ...[...j.presence.members.values()].map(viewOf)]
  }

  /** The periodic work of a space: expiry, then the model's plan of beacons and frames. */
  tick (j: Joined, now: number): void {
    const dropped = sweep(j.presence, now, did => isExcluded(j.d, j.policy, did, now))
    for (const did of dropped ?? []) this.dropMember(j, did)
    if (j.removed) return
    const plan = decide(j.presence, now, { interest: this.interest, ready: peer => this.ready(j, peer) })
    if (plan.beacon) void this.sendBeacon(j).catch(() => {})
    if (plan.gossipFrame) void publishFrame(this.core.gossip, j, { t: 'presence', d: this.frame(j, 'full', plan.moving, now) }).catch(() => {})
    if (plan.frames != null) this.sendFrames(j, plan.frames, plan.moving, now)
  }

  async sendBeacon (j: Joined): Promise<void> {
    const me = j.presence.me
    const b = await createBeacon(this.core.key, {
      space: j.d.id,
      peer: this.core.protocols.peerId,
      addrs: this.core.protocols.addresses().slice(0, BEACON_ADDRS).filter(a => a.length <= MAX_BEACON_ADDR_LENGTH),
      name: me.name,
      avatar: me.avatar,
      position: me.position,
      rotation: me.rotation,
      ts: Date.now()
    })
    await publishFrame(this.core.gossip, j, { t: 'beacon', d: b.bytes })
  }

  async sayBye (j: Joined): Promise<void> {
    const bye = await createBye(this.core.key, j.d.id)
    await publishFrame(this.core.gossip, j, { t: 'bye', d: bye.bytes })
  }

  /** Our frame of `kind`, sealed in a private space. */
  private frame (j: Joined, kind: 'full' | 'move', moving: boolean, now: number): Uint8Array {
    const bytes = encodeOwn(j.presence, kind, moving, now)
    return j.d.private ? j.keys.seal('presence', bytes) : bytes
  }

  /** Carries out a frame plan: streams to the near, none to those who left, the frame to each ready stream. */
  private sendFrames (j: Joined, plan: FramePlan, moving: boolean, now: number): void {
    for (const { peer } of plan.left) this.closeOut(j, peer)
    for (const { peer } of plan.near) this.outbound(j, peer)
    let full: Uint8Array | undefined
    let move: Uint8Array | undefined
    for (const { peer, kind } of plan.send) {
      const o = j.streams.out.get(peer)
      if (o?.out == null) continue
      const frame = kind === 'full' ? (full ??= this.frame(j, 'full', moving, now)) : (move ??= this.frame(j, 'move', moving, now))
      o.busy = true
      o.out.write(frame).then(() => { o.busy = false }, () => { o.busy = false; this.closeOut(j, peer) })
    }
  }

  /** Whether our stream to `peer` is open and idle. */
  private ready (j: Joined, peer: string): boolean {
    const o = j.streams.out.get(peer)
    return o != null && !o.busy && o.out != null
  }

  /** The stream we send presence to `peer` on, opened in the background on first use. */
  private outbound (j: Joined, peer: string): Outbound {
    let o = j.streams.out.get(peer)
    if (o != null) return o
    const fresh: Outbound = { busy: false, closed: false }
    o = fresh
    j.streams.out.set(peer, fresh)
    void (async () => {
      // Connected already: that connection (the port's choice). Otherwise the addresses from the
      // member's beacon (kept with the member, not in the peer store, so made-up beacons cannot fill it).
      const addresses = dialAddrs(memberOnPeer(j.presence, peer)?.addrs ?? [], peer)
      const stream = await this.core.protocols.dial(peer, PRESENCE_PROTOCOL, { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS), runOnLimitedConnection: true, addresses })
      if (fresh.closed) { stream.abort(new Error('closed')); return }
      const out = framed(stream, { maxFrameBytes: MAX_PRESENCE_STREAM_FRAME_BYTES })
      await out.write(dagCbor.encode({ space: j.d.id, binding: this.core.binding }))
      fresh.stream = stream
      fresh.out = out
    })().catch(err => {
      log('presence stream to %s: %s', peer, (err as Error).message)
      // Retry on a later tick, not at once.
      setTimeout(() => { if (j.streams.out.get(peer) === fresh) j.streams.out.delete(peer) }, STILL_HEARTBEAT_MS).unref?.()
    })
    return fresh
  }

  private closeOut (j: Joined, peer: string): void {
    const o = j.streams.out.get(peer)
    if (o == null) return
    o.closed = true
    j.streams.out.delete(peer)
    streamClosed(j.presence, peer)
    void o.stream?.close().catch(() => {})
  }

  /** Closes every presence stream of a space (we leave it, or stop). */
  closeAll (j: Joined): void {
    for (const [peer, o] of j.streams.out) { o.closed = true; streamClosed(j.presence, peer); void o.stream?.close().catch(() => {}) }
    j.streams.out.clear()
    for (const set of j.streams.inbound.values()) for (const s of set) s.abort(new Error('left the space'))
    j.streams.inbound.clear()
  }

  /** Forgets a member (gone, left, or excluded by the policy): its streams close, and 'space:leave' goes out. */
  dropMember (j: Joined, did: string): void {
    const m = removeMember(j.presence, did)
    if (m == null) return
    this.closeOut(j, m.peer)
    for (const s of j.streams.inbound.get(m.peer) ?? []) s.abort(new ExcludedError('gone from the space'))
    j.streams.inbound.delete(m.peer)
    this.core.emit('space:leave', { space: j.d.id, did })
  }

  // -- what others send ------------------------------------------------------------------------

  /**
   * A beacon from gossip: checked (author, policy, peer, age, rate, an admission proof from an
   * author the space does not know, roster), then applied. In a full roster a known author takes
   * the place of the member unknown to the space heard from longest ago.
   */
  takeBeacon (j: Joined, bytes: Uint8Array, from: string, now: number, proof?: Uint8Array): void {
    const id = j.d.id
    const b = verifyBeacon(bytes, id, now)
    if (b.author === this.core.did) return
    if (isExcluded(j.d, j.policy, b.author, now)) throw new ExcludedError(`${b.author} is kept out of ${id}`)
    if (b.peer !== from) throw new InvalidSpaceRequestError(`beacon names peer ${b.peer} but came from ${from}`)
    if (b.ts < now - MAX_BEACON_AGE_MS) throw new InvalidSpaceRequestError('a stale beacon')
    if (!this.beaconBuckets.take(from)) throw new SpaceRateLimitError(`more than ${BEACONS_PER_PEER_PER_SECOND} beacons a second`)
    const known = this.known(j, b.author)
    if (!known) checkAdmission(id, b.author, proof)
    if (!j.presence.members.has(b.author) && j.presence.members.size >= MAX_ROSTER_MEMBERS) {
      let stranger: { did: string, seenAt: number } | undefined
      if (known) for (const m of j.presence.members.values()) if (!this.known(j, m.did) && (stranger == null || m.seenAt < stranger.seenAt)) stranger = m
      if (stranger == null) throw new SpaceRateLimitError(`space roster holds ${MAX_ROSTER_MEMBERS} members`)
      this.dropMember(j, stranger.did)
    }
    const seen = applyBeacon(j.presence, b, now)
    if (seen == null) return
    if (seen.oldPeer != null) this.closeOut(j, seen.oldPeer)
    this.core.emit('space:presence', { space: id, ...seen.view })
  }

  /** A leaving notice: the member goes, unless a newer beacon of it came since. */
  takeBye (j: Joined, bytes: Uint8Array, now: number): void {
    const b = verifyBye(bytes, j.d.id, now)
    if (b.ts < now - MAX_BEACON_AGE_MS) throw new InvalidSpaceRequestError('a stale leaving notice')
    const m = j.presence.members.get(b.author)
    if (m != null && m.beaconTs > 0 && b.ts >= m.beaconTs) this.dropMember(j, b.author)
  }

  /** A presence frame over gossip (interest management off: every frame goes to the whole space). */
  takeGossipFrame (j: Joined, from: string, bytes: Uint8Array): void {
    const did = memberOnPeer(j.presence, from)?.did
    if (did == null) return
    this.takePresence(j, did, from, bytes)
  }

  /** One presence frame (sealed in a private space) from `did` on `peer`. */
  takePresence (j: Joined, did: string, peer: string, bytes: Uint8Array): void {
    const frame = j.d.private ? j.keys.open('presence', bytes) : bytes
    const view = applyFrame(j.presence, did, peer, frame, Date.now())
    if (view != null) this.core.emit('space:presence', { space: j.d.id, ...view })
  }

  /** The presence protocol's handler: frames from one peer for one space. */
  readonly receive = (stream: Stream, remote: RemotePeer): void => {
    void this.receiveStream(stream, remote.peer)
  }

  private async receiveStream (stream: Stream, peer: string): Promise<void> {
    const f = framed(stream, { maxFrameBytes: MAX_PRESENCE_READ_BYTES })
    try {
      const first = await f.read({ signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })
      if (first == null) throw new UnexpectedEOFError('the stream ended before it opened')
      const open = dagCbor.decode(first) as { space?: unknown, binding?: unknown }
      if (open == null || typeof open.space !== 'string' || !(open.binding instanceof Uint8Array)) throw new InvalidSpaceRequestError('presence stream must open with space and binding')
      const j = this.core.joined.get(open.space)
      if (j == null) throw new NotJoinedError(`not in space ${open.space}`)
      const { did } = await verifyPeerBinding(open.binding, peer)
      if (isExcluded(j.d, j.policy, did, Date.now())) throw new ExcludedError(`${did} is kept out of the space`)
      let set = j.streams.inbound.get(peer)
      if (set == null) { set = new Set(); j.streams.inbound.set(peer, set) }
      if (set.size >= MAX_PRESENCE_STREAMS_PER_PEER) throw new SpaceRateLimitError(`more than ${MAX_PRESENCE_STREAMS_PER_PEER} presence streams from one peer`)
      set.add(stream)
      const buckets = new TokenBuckets(PRESENCE_FRAMES_PER_SECOND, PRESENCE_FRAMES_PER_SECOND)
      try {
        while (true) {
          let frame: Uint8Array | null
          try {
            frame = await f.read()
          } catch (err) {
            if ((err as Error).name === 'UnexpectedEOFError') break
            throw err
          }
          if (frame == null) break
          if (!buckets.take('f')) throw new SpaceRateLimitError(`more than ${PRESENCE_FRAMES_PER_SECOND} presence frames a second`)
          this.takePresence(j, did, peer, frame)
        }
      } finally {
        set.delete(stream)
        if (set.size === 0) j.streams.inbound.delete(peer)
      }
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      const e = err as Error
      if (e.name !== 'StreamResetError' && e.name !== 'AbortError') this.core.reject(peer, PRESENCE_PROTOCOL, e)
    }
  }
}
