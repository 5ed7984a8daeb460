/**
 * Interest management with no server: who I send frequent presence to, how often, and how a
 * receiver smooths what arrives. Pure: no I/O, the clock is passed in.
 *
 * A space is a rectangle on the x/z plane cut into square cells (size from its descriptor); a peer
 * listens to the cells around it (cellsAround, aoiCellRadius). From every presence frame or beacon
 * it hears, a peer keeps a roster of positions (Interest). Members within AOI_RADIUS get my
 * presence at up to 20 Hz; everyone else only hears the space-wide beacon. Two rules keep that
 * calm and bounded: hysteresis (enter at AOI_RADIUS, leave beyond AOI_RADIUS + AOI_HYSTERESIS, so
 * someone standing on the boundary does not flap in and out) and a cap (at most MAX_NEAR_MEMBERS,
 * the nearest, so a crowd of hundreds in one spot keeps fan-out fixed; members already near are
 * ranked NEAR_RANK_MARGIN closer than they are, so jostling in a crowd does not churn the set).
 */

/** Positions are metres; no coordinate may be larger than this (f32 still resolves ~6 cm here). */
export const MAX_COORDINATE_M = 1_000_000
/** Members within this distance (metres, on x/z) get frequent presence. */
export const AOI_RADIUS = 32
/** A near member leaves only beyond AOI_RADIUS + AOI_HYSTERESIS. */
export const AOI_HYSTERESIS = 4
/** Most members I send frequent presence to (32 × 20 Hz × ~60 bytes ≈ 38 KB/s up). */
export const MAX_NEAR_MEMBERS = 32
/** Under the cap, a newcomer displaces a near member only if it is this much closer (metres). */
export const NEAR_RANK_MARGIN = 2
/** Most members a roster tracks; more are refused (RosterFullError). */
export const MAX_ROSTER_MEMBERS = 4096
/** Longest member id (a did:key is 56 characters). */
export const MAX_MEMBER_ID_LENGTH = 128
/** Widest neighbourhood cellsAround returns: (2r+1)² cells. */
export const MAX_CELL_RADIUS = 16

// -- how often: the one timing rule, used by the presence model (presence.ts) and the tests ---------

/** Frames per second while moving, to each near member. */
export const MAX_PRESENCE_HZ = 20
/** Presence frame interval to near members while moving. */
export const MOVING_INTERVAL_MS = 1000 / MAX_PRESENCE_HZ
/** Heartbeat to near members while standing still. */
export const STILL_HEARTBEAT_MS = 1000
/** A member counts as moving this long after its last move. */
export const MOVING_GRACE_MS = 250
/** A frame due within this much of now goes out on this tick rather than the next. */
export const TICK_SLACK_MS = 2
/**
 * Space-wide beacon interval (the far channel) while moving, and while still: at least these, and
 * stretched with the roster so that a member receives at most BEACONS_IN_MOVING_PER_SECOND (moving
 * senders) plus BEACONS_IN_STILL_PER_SECOND (still ones) however many share the space: what the
 * far members cost does not grow with the space's size.
 */
export const BEACON_MOVING_MS = 2_000
export const BEACON_STILL_MS = 5_000
export const BEACONS_IN_MOVING_PER_SECOND = 25
export const BEACONS_IN_STILL_PER_SECOND = 10
/** The far channel's base intervals are the beacon's. */
export { BEACON_MOVING_MS as FAR_BEACON_MOVING_MS, BEACON_STILL_MS as FAR_BEACON_STILL_MS }
/** A near member silent this long (five missed heartbeats) is gone. */
export const NEAR_MEMBER_TIMEOUT_MS = 5_000
/** A far member not heard from (beacon or presence) for this long is gone, in a small space. */
export const MEMBER_GONE_MS = BEACON_STILL_MS * 2 + 1_000
/**
 * A roster entry unheard for longer is forgotten by Interest.expire (its default): two still
 * beacons, so one lost beacon is not a departure. The space service sweeps by its own rule
 * (NEAR_MEMBER_TIMEOUT_MS near, goneAfter far) and gives Interest a longer timeout.
 */
export const MEMBER_TIMEOUT_MS = 2 * BEACON_STILL_MS
/** How often members are checked for silence and exclusion. */
export const SWEEP_INTERVAL_MS = 250

export class InvalidInterestInputError extends Error {
  name = 'InvalidInterestInputError'
}

export class RosterFullError extends Error {
  name = 'RosterFullError'
}

export interface Cell { cx: number, cz: number }
export type Vec3 = [number, number, number]
/** Unit quaternion [x, y, z, w] (three.js order). */
export type Quat = [number, number, number, number]
export interface Pose { position: Vec3, rotation: Quat }

function checkNumber (value: unknown, what: string, max = MAX_COORDINATE_M): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || Math.abs(value) > max) {
    throw new InvalidInterestInputError(`${what} must be a finite number within ±${max}`)
  }
}

function checkCellSize (cellSize: unknown): asserts cellSize is number {
  if (typeof cellSize !== 'number' || !Number.isFinite(cellSize) || cellSize <= 0) {
    throw new InvalidInterestInputError('cell size must be a positive number of metres')
  }
}

/** The cell holding point (x, z). */
export function cellOf (x: number, z: number, cellSize: number): Cell {
  checkNumber(x, 'x')
  checkNumber(z, 'z')
  checkCellSize(cellSize)
  return { cx: Math.floor(x / cellSize) + 0, cz: Math.floor(z / cellSize) + 0 }
}

/** A string naming a cell, for maps and topic names. */
export function cellKey (cell: Cell): string {
  return `${cell.cx},${cell.cz}`
}

/** The (2r+1)² cells within radiusCells of cell (a square), the centre first, then row by row. */
export function cellsAround (cell: Cell, radiusCells: number): Cell[] {
  if (!Number.isSafeInteger(cell?.cx) || !Number.isSafeInteger(cell?.cz)) throw new InvalidInterestInputError('cell must have integer cx and cz')
  if (!Number.isSafeInteger(radiusCells) || radiusCells < 0 || radiusCells > MAX_CELL_RADIUS) {
    throw new InvalidInterestInputError(`radius must be an integer in 0..${MAX_CELL_RADIUS} cells`)
  }
  const out: Cell[] = [{ cx: cell.cx, cz: cell.cz }]
  for (let dz = -radiusCells; dz <= radiusCells; dz++) {
    for (let dx = -radiusCells; dx <= radiusCells; dx++) {
      if (dx !== 0 || dz !== 0) out.push({ cx: cell.cx + dx, cz: cell.cz + dz })
    }
  }
  return out
}

/** Cells a peer must listen around its own to hear everyone within `radius` metres. */
export function aoiCellRadius (cellSize: number, radius: number = AOI_RADIUS + AOI_HYSTERESIS): number {
  checkCellSize(cellSize)
  checkNumber(radius, 'radius')
  const r = Math.ceil(radius / cellSize)
  if (r > MAX_CELL_RADIUS) throw new InvalidInterestInputError(`cells of ${cellSize} m need ${r} cells of radius, over ${MAX_CELL_RADIUS}`)
  return r
}

export interface RosterEntry { x: number, z: number, seenAt: number }

export interface NearResult {
  /** Members to send frequent presence to. */
  near: ReadonlySet<string>
  /** Members that became near since the last call (send them a full frame). */
  entered: string[]
  /** Members no longer near (moved away, expired or removed). */
  left: string[]
}

export interface InterestInit {
  aoiRadius?: number
  aoiHysteresis?: number
  nearRankMargin?: number
  maxNear?: number
  memberTimeoutMs?: number
  maxRoster?: number
}

/** One peer's view of a space: a roster of members' positions and my own; decides who is near. */
export class Interest {
  readonly aoiRadius: number
  readonly aoiHysteresis: number
  readonly nearRankMargin: number
  readonly maxNear: number
  readonly memberTimeoutMs: number
  readonly maxRoster: number
  readonly #roster = new Map<string, RosterEntry>()
  #near = new Set<string>()
  #x = 0
  #z = 0

  constructor (init: InterestInit = {}) {
    this.aoiRadius = init.aoiRadius ?? AOI_RADIUS
    this.aoiHysteresis = init.aoiHysteresis ?? AOI_HYSTERESIS
    this.nearRankMargin = init.nearRankMargin ?? NEAR_RANK_MARGIN
    this.maxNear = init.maxNear ?? MAX_NEAR_MEMBERS
    this.memberTimeoutMs = init.memberTimeoutMs ?? MEMBER_TIMEOUT_MS
    this.maxRoster = init.maxRoster ?? MAX_ROSTER_MEMBERS
    checkNumber(this.aoiRadius, 'aoiRadius')
    checkNumber(this.aoiHysteresis, 'aoiHysteresis')
    checkNumber(this.nearRankMargin, 'nearRankMargin')
    if (this.aoiRadius < 0 || this.aoiHysteresis < 0 || this.nearRankMargin < 0) throw new InvalidInterestInputError('radius, hysteresis and margin must not be negative')
    for (const [what, n] of [['maxNear', this.maxNear], ['memberTimeoutMs', this.memberTimeoutMs], ['maxRoster', this.maxRoster]] as const) {
      if (!Number.isSafeInteger(n) || n < 0) throw new InvalidInterestInputError(`${what} must be a non-negative integer`)
    }
  }

  /** Members heard from and not yet expired. */
  get roster (): ReadonlyMap<string, Readonly<RosterEntry>> {
    return this.#roster
  }

  /** The near set as of the last near() call. */
  get nearSet (): ReadonlySet<string> {
    return this.#near
  }

  /** My own position. */
  get position (): { x: number, z: number } {
    return { x: this.#x, z: this.#z }
  }

  setPosition (x: number, z: number): void {
    checkNumber(x, 'x')
    checkNumber(z, 'z')
    this.#x = x
    this.#z = z
  }

  /** Records where a member was heard at `now` (from a presence frame or a beacon). Throws RosterFullError. */
  update (memberId: string, x: number, z: number, now: number): void {
    if (typeof memberId !== 'string' || memberId.length === 0 || memberId.length > MAX_MEMBER_ID_LENGTH) {
      throw new InvalidInterestInputError(`member id must be a string of 1..${MAX_MEMBER_ID_LENGTH} characters`)
    }
    checkNumber(x, 'x')
    checkNumber(z, 'z')
    checkNumber(now, 'now', Number.MAX_SAFE_INTEGER)
    const entry = this.#roster.get(memberId)
    if (entry != null) {
      entry.x = x
      entry.z = z
      entry.seenAt = Math.max(entry.seenAt, now)
      return
    }
    if (this.#roster.size >= this.maxRoster) throw new RosterFullError(`roster holds ${this.maxRoster} members`)
    this.#roster.set(memberId, { x, z, seenAt: now })
  }

  /** Forgets a member (it said goodbye, or its stream closed); near() reports it as left. */
  remove (memberId: string): boolean {
    return this.#roster.delete(memberId)
  }

  /** Forgets members silent for more than memberTimeoutMs; returns their ids. */
  expire (now: number): string[] {
    checkNumber(now, 'now', Number.MAX_SAFE_INTEGER)
    const gone: string[] = []
    for (const [id, e] of this.#roster) {
      if (now - e.seenAt > this.memberTimeoutMs) {
        this.#roster.delete(id)
        gone.push(id)
      }
    }
    return gone
  }

  /** Expires the silent, then recomputes who is near and what changed since the last call. */
  near (now: number): NearResult {
    this.expire(now)
    const enter = this.aoiRadius
    const leave = this.aoiRadius + this.aoiHysteresis
    const candidates: Array<{ id: string, rank: number }> = []
    for (const [id, e] of this.#roster) {
      const d = Math.hypot(e.x - this.#x, e.z - this.#z)
      const was = this.#near.has(id)
      if (d <= (was ? leave : enter)) candidates.push({ id, rank: was ? d - this.nearRankMargin : d })
    }
    if (candidates.length > this.maxNear) {
      candidates.sort((a, b) => a.rank - b.rank || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      candidates.length = this.maxNear
    }
    const next = new Set(candidates.map(c => c.id))
    const entered = [...next].filter(id => !this.#near.has(id)).sort()
    const left = [...this.#near].filter(id => !next.has(id)).sort()
    this.#near = next
    return { near: next, entered, left }
  }
}

export type PresenceChannel = 'near' | 'far'

/** Our beacon interval in a space of `roster` members (us included). */
export function beaconInterval (moving: boolean, roster: number): number {
  return moving
    ? Math.max(BEACON_MOVING_MS, Math.ceil(roster * 1000 / BEACONS_IN_MOVING_PER_SECOND))
    : Math.max(BEACON_STILL_MS, Math.ceil(roster * 1000 / BEACONS_IN_STILL_PER_SECOND))
}

/** How long a far member may be silent before it counts as gone, in a space of `roster` members. */
export function goneAfter (roster: number): number {
  return Math.max(MEMBER_GONE_MS, beaconInterval(false, roster) * 2 + 1_000)
}

/**
 * Milliseconds between frames on a channel: near 50 moving / 1000 still; far (the beacon) 2000
 * moving / 5000 still, stretched in a space of many members (`roster`, us included; default 1).
 */
export function presenceInterval (channel: PresenceChannel, moving: boolean, roster = 1): number {
  if (channel === 'far') return beaconInterval(moving, roster)
  return moving ? MOVING_INTERVAL_MS : STILL_HEARTBEAT_MS
}

export interface PresenceDelayInput {
  /** True while the pose changes; keep it true until a frame with the resting pose has gone out. */
  moving: boolean
  /** When this channel last sent a frame (undefined: never). */
  lastSentAt?: number
  now: number
  /** 'near' (default): frames to near members; 'far': the space-wide beacon. */
  channel?: PresenceChannel
  /** Members in the space, us included (stretches the far channel); default 1. */
  roster?: number
}

/** Milliseconds until the next frame on the channel is due; 0 means send now. */
export function presenceDelay ({ moving, lastSentAt, now, channel = 'near', roster = 1 }: PresenceDelayInput): number {
  checkNumber(now, 'now', Number.MAX_SAFE_INTEGER)
  if (lastSentAt == null) return 0
  checkNumber(lastSentAt, 'lastSentAt', Number.MAX_SAFE_INTEGER)
  const interval = presenceInterval(channel, moving, roster)
  return Math.max(0, Math.min(interval, lastSentAt + interval - now)) // a clock stepping back waits one interval at most
}

function checkVec (v: unknown, n: number, what: string): asserts v is number[] {
  if (!Array.isArray(v) || v.length !== n || !v.every(c => typeof c === 'number' && Number.isFinite(c))) {
    throw new InvalidInterestInputError(`${what} must be ${n} finite numbers`)
  }
}

/** The unit quaternion in q's direction; throws for a zero or non-finite one. */
export function normalizeQuat (q: Quat): Quat {
  checkVec(q, 4, 'rotation')
  const n = Math.hypot(q[0], q[1], q[2], q[3])
  if (!(n > 1e-9) || !Number.isFinite(n)) throw new InvalidInterestInputError('rotation cannot be normalised')
  return [q[0] / n, q[1] / n, q[2] / n, q[3] / n]
}

/** Spherical interpolation along the shorter arc; nlerp where the arc is too short for slerp. */
export function slerp (a: Quat, b: Quat, t: number): Quat {
  const p = normalizeQuat(a)
  let q = normalizeQuat(b)
  let dot = p[0] * q[0] + p[1] * q[1] + p[2] * q[2] + p[3] * q[3]
  if (dot < 0) {
    q = [-q[0], -q[1], -q[2], -q[3]]
    dot = -dot
  }
  let s0 = 1 - t
  let s1 = t
  if (dot < 0.9995) {
    const theta = Math.acos(dot)
    const sin = Math.sin(theta)
    s0 = Math.sin((1 - t) * theta) / sin
    s1 = Math.sin(t * theta) / sin
  }
  return normalizeQuat([s0 * p[0] + s1 * q[0], s0 * p[1] + s1 * q[1], s0 * p[2] + s1 * q[2], s0 * p[3] + s1 * q[3]])
}

/**
 * The pose a fraction t (clamped to 0..1) of the way from prev to next: position linear, rotation
 * slerp; t = 0 and t = 1 give prev and next exactly (rotations normalised).
 */
export function interpolate (prev: Pose, next: Pose, t: number): Pose {
  checkVec(prev?.position, 3, 'position')
  checkVec(next?.position, 3, 'position')
  if (typeof t !== 'number' || Number.isNaN(t)) throw new InvalidInterestInputError('t must be a number')
  const u = Math.min(1, Math.max(0, t))
  if (u === 0) return { position: [...prev.position], rotation: normalizeQuat(prev.rotation) }
  if (u === 1) return { position: [...next.position], rotation: normalizeQuat(next.rotation) }
  const a = prev.position
  const b = next.position
  return {
    position: [a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u, a[2] + (b[2] - a[2]) * u],
    rotation: slerp(prev.rotation, next.rotation, u)
  }
}
