/**
 * Presence as a pure model, in the style of y-protocols' awareness: plain state (our own pose and
 * look, the members we hear of with the order of their frames), encode (our frame), apply (a
 * member's frame or beacon, keeping only what is newer), and the decisions of what to send whom
 * and when (sweep, decide, planFrames) by the one timing rule in interest.ts: 20 Hz to near
 * members while moving, a heartbeat while still, beacons to the whole space stretched with its
 * size, near and far with hysteresis and a cap. No I/O and no clock: the caller passes `now`,
 * moves the bytes and acts on the plan; like awareness's apply, these functions change the state
 * they are given and nothing else. Tests drive it with a hand-held clock.
 */
import { MAX_ALTITUDE } from './world.ts'
import {
  Interest, MOVING_GRACE_MS, NEAR_MEMBER_TIMEOUT_MS, goneAfter, presenceDelay, SWEEP_INTERVAL_MS, TICK_SLACK_MS,
  type Quat, type Vec3
} from './interest.ts'
import { decodePresence, encodePresence, PresenceTrack, type Presence } from './presence-wire.ts'
import type { Grid } from './records.ts'

export interface MemberView {
  did: string
  peer: string
  name: string
  avatar: string
  position: Vec3
  rotation: Quat
  /** Whether this member is in our area of interest (frequent updates). */
  near: boolean
  moving: boolean
  seenAt: number
  /** The sender's clock (ms) when it sent the position we hold: for interpolation, and for latency. */
  time: number
}

/** A member as we hold it: its view, the beacon's addresses, and the order of its frames. */
export interface Member extends MemberView {
  addrs: string[]
  track: PresenceTrack
  beaconTs: number
}

/** Our own presence in a space. */
export interface Me {
  name: string
  avatar: string
  position: Vec3
  rotation: Quat
  lastMoveAt: number
  lastFrameAt: number
  lastBeaconAt: number
  seq: number
}

export interface PresenceState {
  readonly grid: Grid
  readonly me: Me
  readonly members: Map<string, Member>
  readonly interest: Interest
  sweptAt: number
  /** Peers that hold our full frame (name, avatar) on their current stream. */
  readonly hasFull: Set<string>
}

/** A beacon's content, as verified (records.ts). */
export interface BeaconSeen {
  author: string
  peer: string
  addrs: string[]
  name: string
  avatar: string
  position: Vec3
  rotation: Quat
  ts: number
}

/** Roster entries outlive anything the sweep keeps: expiry is the sweep's, by near and far. */
const ROSTER_KEEP_MS = 24 * 3600_000

/** Fresh presence in a space: us at the middle of its grid, facing forward, nobody heard of. */
export function createPresence (grid: Grid, name: string, avatar: string): PresenceState {
  return {
    grid,
    me: { name, avatar, position: [grid.width / 2, 0, grid.depth / 2], rotation: [0, 0, 0, 1], lastMoveAt: 0, lastFrameAt: 0, lastBeaconAt: 0, seq: 0 },
    members: new Map(),
    interest: new Interest({ memberTimeoutMs: ROSTER_KEEP_MS }),
    sweptAt: 0,
    hasFull: new Set()
  }
}

// -- our own state -----------------------------------------------------------------------------

/** Whether we count as moving at `now`. */
export function isMoving (s: PresenceState, now: number): boolean {
  return now - s.me.lastMoveAt < MOVING_GRACE_MS
}

/** Our new pose, clamped to the space (x, z in the grid; y within ±MAX_ALTITUDE). */
export function setPose (s: PresenceState, position: Vec3, rotation: Quat, now: number): void {
  const g = s.grid
  s.me.position = [Math.min(Math.max(position[0], 0), g.width), Math.min(Math.max(position[1], -MAX_ALTITUDE), MAX_ALTITUDE), Math.min(Math.max(position[2], 0), g.depth)]
  s.me.rotation = rotation
  s.me.lastMoveAt = now
  s.interest.setPosition(s.me.position[0], s.me.position[2])
}

/** Our new name and avatar: every near member gets a full frame again. */
export function setLook (s: PresenceState, look: { name?: string, avatar?: string }): void {
  if (look.name != null) s.me.name = look.name
  if (look.avatar != null) s.me.avatar = look.avatar
  s.hasFull.clear()
}

/** Our presence as one frame (plaintext), the next in our sequence. */
export function encodeOwn (s: PresenceState, kind: 'full' | 'move', moving: boolean, now: number): Uint8Array {
  const me = s.me
  me.seq = (me.seq + 1) >>> 0
  const base = { seq: me.seq, time: now, position: me.position, rotation: me.rotation, moving }
  const p: Presence = kind === 'full' ? { ...base, kind, name: me.name, avatar: me.avatar === '' ? null : me.avatar } : { ...base, kind }
  return encodePresence(p)
}

/** How we appear in our own member list. */
export function selfView (s: PresenceState, did: string, peer: string, now: number): MemberView {
  const me = s.me
  return { did, peer, name: me.name, avatar: me.avatar, position: me.position, rotation: me.rotation, near: true, moving: isMoving(s, now), seenAt: now, time: now }
}

export function viewOf (m: Member): MemberView {
  return { did: m.did, peer: m.peer, name: m.name, avatar: m.avatar, position: m.position, rotation: m.rotation, near: m.near, moving: m.moving, seenAt: m.seenAt, time: m.time }
}

// -- what others tell us -----------------------------------------------------------------------

/**
 * Applies a member's beacon. Returns the member's view to announce, and the peer it ran on before
 * when that changed (its stream is stale); undefined for a beacon older than one we hold.
 */
export function applyBeacon (s: PresenceState, b: BeaconSeen, now: number): { view: MemberView, oldPeer?: string } | undefined {
  let m = s.members.get(b.author)
  if (m != null && b.ts < m.beaconTs) return undefined
  let oldPeer: string | undefined
  if (m == null) {
    m = { did: b.author, peer: b.peer, name: b.name, avatar: b.avatar, position: b.position, rotation: b.rotation, near: false, moving: false, seenAt: now, time: b.ts, addrs: b.addrs, track: new PresenceTrack(), beaconTs: b.ts }
    s.members.set(b.author, m)
  } else {
    if (m.peer !== b.peer) { oldPeer = m.peer; m.track = new PresenceTrack() }
    m.peer = b.peer
    m.addrs = b.addrs
    m.name = b.name
    m.avatar = b.avatar
    m.beaconTs = b.ts
    m.seenAt = now
    // A beacon's position only counts for members whose frames we do not get.
    if (!m.near) { m.position = b.position; m.rotation = b.rotation; m.time = b.ts }
  }
  s.interest.update(b.author, m.position[0], m.position[2], now)
  return { view: viewOf(m), oldPeer }
}

/**
 * Applies a presence frame (plaintext) from `did` on `peer`: the member's view to announce, or
 * undefined when the frame is older than one we hold (or a first contact that is not a full frame).
 * Throws MalformedPresenceError.
 */
export function applyFrame (s: PresenceState, did: string, peer: string, frame: Uint8Array, now: number): MemberView | undefined {
  const p = decodePresence(frame)
  const m = s.members.get(did)
  if (m == null) {
    // First contact over a stream, before any beacon: a full frame tells us enough.
    if (p.kind !== 'full') return undefined
    const fresh: Member = { did, peer, name: p.name, avatar: p.avatar ?? '', position: p.position, rotation: p.rotation, near: true, moving: p.moving === true, seenAt: now, time: p.time, addrs: [], track: new PresenceTrack(), beaconTs: 0 }
    fresh.track.accept(p, now)
    s.members.set(did, fresh)
    s.interest.update(did, p.position[0], p.position[2], now)
    return viewOf(fresh)
  }
  if (!m.track.accept(p, now)) return undefined
  m.position = p.position
  m.rotation = p.rotation
  m.moving = p.moving === true
  m.seenAt = now
  m.time = p.time
  if (p.kind === 'full') { m.name = p.name; m.avatar = p.avatar ?? '' }
  s.interest.update(did, p.position[0], p.position[2], now)
  return viewOf(m)
}

/** The member a peer runs, if we know it. */
export function memberOnPeer (s: PresenceState, peer: string): Member | undefined {
  for (const m of s.members.values()) if (m.peer === peer) return m
  return undefined
}

/** Forgets a member; returns it (undefined if we did not hold it). */
export function removeMember (s: PresenceState, did: string): Member | undefined {
  const m = s.members.get(did)
  if (m == null) return undefined
  s.members.delete(did)
  s.interest.remove(did)
  return m
}

/** A stream to `peer` closed: the next one starts with a full frame. */
export function streamClosed (s: PresenceState, peer: string): void {
  s.hasFull.delete(peer)
}

// -- what to send whom, and when ---------------------------------------------------------------

/**
 * Members to drop at `now`: silent too long (NEAR_MEMBER_TIMEOUT_MS near, goneAfter(roster) far) or
 * `excluded` (the policy's say). Undefined between sweeps (every SWEEP_INTERVAL_MS).
 */
export function sweep (s: PresenceState, now: number, excluded: (did: string) => boolean): string[] | undefined {
  if (now - s.sweptAt < SWEEP_INTERVAL_MS) return undefined
  s.sweptAt = now
  const gone = goneAfter(s.members.size + 1)
  const out: string[] = []
  for (const [did, m] of s.members) {
    if (now - m.seenAt > (m.near ? NEAR_MEMBER_TIMEOUT_MS : gone) || excluded(did)) out.push(did)
  }
  return out
}

/** Whether a frame to the near members is due at `now` (within TICK_SLACK_MS). */
export function frameDue (s: PresenceState, moving: boolean, now: number): boolean {
  return presenceDelay({ moving, lastSentAt: s.me.lastFrameAt, now }) <= TICK_SLACK_MS
}

export interface PresencePlan {
  moving: boolean
  /** Publish a beacon to the whole space now. */
  beacon: boolean
  /** Interest management off: publish one full frame to the whole space now. */
  gossipFrame: boolean
  /** Interest management on and a frame due: whom to send it to. */
  frames?: FramePlan
}

export interface FramePlan {
  /** Members no longer near: close their streams. */
  left: Array<{ did: string, peer: string }>
  /** Every near member: keep a stream open to each. */
  near: Array<{ did: string, peer: string }>
  /** The frame for each near member whose stream can take one now (a subset of `near`). */
  send: Array<{ did: string, peer: string, kind: 'full' | 'move' }>
}

export interface DecideOptions {
  /** Interest management on (frames to near members) or off (every frame to the whole space). */
  interest: boolean
  /** Whether the stream to a peer is open and idle. */
  ready: (peer: string) => boolean
}

/** The periodic decision (after the sweep): whether a beacon is due, and our frames to whom. */
export function decide (s: PresenceState, now: number, options: DecideOptions): PresencePlan {
  const moving = isMoving(s, now)
  const plan: PresencePlan = { moving, beacon: false, gossipFrame: false }
  if (presenceDelay({ channel: 'far', moving, lastSentAt: s.me.lastBeaconAt, now, roster: s.members.size + 1 }) === 0) {
    s.me.lastBeaconAt = now
    plan.beacon = true
  }
  if (!frameDue(s, moving, now)) return plan
  if (!options.interest) {
    if (s.members.size > 0) {
      s.me.lastFrameAt = now
      plan.gossipFrame = true
    }
    return plan
  }
  plan.frames = planFrames(s, now, options.ready)
  return plan
}

/**
 * Recomputes who is near (hysteresis and cap, interest.ts) and whom our frame goes to now: a full
 * frame (name, avatar) on a stream's first contact and after a change of look, move frames otherwise.
 */
export function planFrames (s: PresenceState, now: number, ready: (peer: string) => boolean): FramePlan {
  const { near, entered, left } = s.interest.near(now)
  const plan: FramePlan = { left: [], near: [], send: [] }
  for (const did of left) {
    const m = s.members.get(did)
    if (m != null) { m.near = false; s.hasFull.delete(m.peer); plan.left.push({ did, peer: m.peer }) }
  }
  for (const did of entered) {
    const m = s.members.get(did)
    if (m != null) m.near = true
  }
  s.me.lastFrameAt = now
  for (const did of near) {
    const m = s.members.get(did)
    if (m == null) continue
    plan.near.push({ did, peer: m.peer })
    if (!ready(m.peer)) continue
    plan.send.push({ did, peer: m.peer, kind: s.hasFull.has(m.peer) ? 'move' : 'full' })
    s.hasFull.add(m.peer)
  }
  return plan
}
