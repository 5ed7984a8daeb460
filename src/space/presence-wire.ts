/**
 * Compact binary presence frames, sent up to 20 times a second to each near member over an
 * authenticated stream (so a frame carries no signature of its own). Pure: bytes in, bytes out.
 *
 * Frame (big-endian), 41 bytes for a move:
 *   version u8 (1) ‖ kind u8 (1 move, 2 full) ‖ flags u8 (bit 0: moving; others must be 0)
 *   ‖ seq u32 ‖ time u48 (sender's clock, ms) ‖ position 3×f32 (metres)
 *   ‖ rotation 4×f32 (unit quaternion x, y, z, w)
 * a full frame (first contact, and whenever they change) then adds
 *   avatarLength u8 ‖ avatar (CID string, ASCII, 0 = none) ‖ nameLength u8 ‖ name (UTF-8)
 * The moving flag tells a receiver to animate a walk and keep interpolating; a still heartbeat
 * clears it.
 * The encoder normalises the rotation; the decoder refuses one whose norm is off by more than
 * QUATERNION_NORM_TOLERANCE (junk, not rounding) and renormalises the rest. Any other defect
 * (length, version, kind, NaN, ±Infinity, out-of-range position, bad UTF-8, trailing bytes) is a
 * MalformedPresenceError: the only error decodePresence throws.
 */
import { CID } from 'multiformats/cid'
import { MAX_COORDINATE_M, NEAR_MEMBER_TIMEOUT_MS, type Quat, type Vec3 } from './interest.ts'

export const PRESENCE_VERSION = 1
export const PRESENCE_KIND_MOVE = 1
export const PRESENCE_KIND_FULL = 2
export const PRESENCE_FLAG_MOVING = 1
/** Bytes of a move frame (and of the part every frame starts with). */
export const PRESENCE_MOVE_FRAME_BYTES = 1 + 1 + 1 + 4 + 6 + 3 * 4 + 4 * 4
/** Longest avatar CID string, in bytes. */
export const MAX_AVATAR_BYTES = 128
/** Longest display name, in UTF-8 bytes. */
export const MAX_DISPLAY_NAME_BYTES = 64
/** Largest frame: a full frame with the longest avatar and name (235 bytes). */
export const MAX_PRESENCE_FRAME_BYTES = PRESENCE_MOVE_FRAME_BYTES + 1 + MAX_AVATAR_BYTES + 1 + MAX_DISPLAY_NAME_BYTES
/** Largest time (u48 milliseconds: the year 10889). */
export const MAX_PRESENCE_TIME_MS = 2 ** 48 - 1
export const MAX_PRESENCE_SEQ = 0xffff_ffff
/** How far a rotation's norm may be from 1 (f32 rounding of a unit quaternion is ~1e-7). */
export const QUATERNION_NORM_TOLERANCE = 1e-3
/** A track silent this long accepts any seq next (the sender restarted its counter). */
export const PRESENCE_TRACK_RESET_MS = NEAR_MEMBER_TIMEOUT_MS

export class MalformedPresenceError extends Error {
  name = 'MalformedPresenceError'
}

interface PresenceBase {
  /** Sender's frame counter (u32, wraps). */
  seq: number
  /** Sender's clock, integer milliseconds. */
  time: number
  position: Vec3
  rotation: Quat
  /** Whether the sender is moving: optional to encode (default false), always set when decoded. */
  moving?: boolean
}

export interface PresenceMove extends PresenceBase { kind: 'move' }

export interface PresenceFull extends PresenceBase {
  kind: 'full'
  /** CID string of the avatar model, or null for none. */
  avatar: string | null
  name: string
}

export type Presence = PresenceMove | PresenceFull

const utf8 = new TextEncoder()
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
// C0 and C1 controls and DEL: a display name is one line of visible text.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u

function fail (message: string): never {
  throw new MalformedPresenceError(message)
}

function checkCoordinate (v: number, what: string): void {
  if (!Number.isFinite(v)) fail(`${what} is not finite`)
  if (Math.abs(v) > MAX_COORDINATE_M) fail(`${what} is beyond ±${MAX_COORDINATE_M} m`)
}

/** The unit quaternion of q, or a MalformedPresenceError when its norm is not within tolerance of 1. */
function unitQuat (q: readonly number[], tolerance: number): Quat {
  if (q.length !== 4 || !q.every(Number.isFinite)) fail('rotation must be 4 finite numbers')
  const n = Math.hypot(q[0], q[1], q[2], q[3])
  if (!(Math.abs(n - 1) <= tolerance)) fail(`rotation has norm ${n}, not a unit quaternion`)
  return [q[0] / n, q[1] / n, q[2] / n, q[3] / n]
}

function checkAvatar (avatar: string): void {
  if (!/^[\x21-\x7e]+$/.test(avatar)) fail('avatar must be printable ASCII')
  try {
    CID.parse(avatar)
  } catch {
    fail('avatar is not a CID')
  }
}

function checkName (name: string, bytes: Uint8Array): void {
  if (bytes.length > MAX_DISPLAY_NAME_BYTES) fail(`name is ${bytes.length} bytes, over ${MAX_DISPLAY_NAME_BYTES}`)
  if (CONTROL.test(name)) fail('name has control characters')
}

/** Encodes a presence frame; throws MalformedPresenceError for a presence no decoder would accept. */
export function encodePresence (p: Presence): Uint8Array {
  if (p == null || typeof p !== 'object') fail('presence must be an object')
  if (p.kind !== 'move' && p.kind !== 'full') fail('kind must be move or full')
  if (!Number.isInteger(p.seq) || p.seq < 0 || p.seq > MAX_PRESENCE_SEQ) fail('seq must be a u32')
  if (!Number.isInteger(p.time) || p.time < 0 || p.time > MAX_PRESENCE_TIME_MS) fail('time must be a u48 of milliseconds')
  if (!Array.isArray(p.position) || p.position.length !== 3) fail('position must be 3 numbers')
  p.position.forEach((v, i) => { checkCoordinate(v, `position[${i}]`) })
  if (!Array.isArray(p.rotation) || p.rotation.length !== 4 || !p.rotation.every(Number.isFinite)) fail('rotation must be 4 finite numbers')
  const n = Math.hypot(...p.rotation)
  if (!(n > 1e-6) || !Number.isFinite(n)) fail('rotation cannot be normalised')
  const rotation = unitQuat(p.rotation.map(c => c / n), QUATERNION_NORM_TOLERANCE)
  if (p.moving !== undefined && typeof p.moving !== 'boolean') fail('moving must be a boolean')
  let avatar = new Uint8Array(0)
  let name = new Uint8Array(0)
  if (p.kind === 'full') {
    const avatarText = p.avatar
    if (avatarText !== null) {
      if (typeof avatarText !== 'string' || avatarText === '') fail('avatar must be a CID string or null')
      if (avatarText.length > MAX_AVATAR_BYTES) fail(`avatar is ${avatarText.length} characters, over ${MAX_AVATAR_BYTES}`)
      checkAvatar(avatarText)
      avatar = utf8.encode(avatarText)
    }
    const nameText = p.name
    if (typeof nameText !== 'string') fail('name must be a string')
    name = utf8.encode(nameText)
    if (strictUtf8.decode(name) !== nameText) fail('name is not well-formed Unicode')
    checkName(nameText, name)
  }
  const size = PRESENCE_MOVE_FRAME_BYTES + (p.kind === 'full' ? 2 + avatar.length + name.length : 0)
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  view.setUint8(0, PRESENCE_VERSION)
  view.setUint8(1, p.kind === 'move' ? PRESENCE_KIND_MOVE : PRESENCE_KIND_FULL)
  view.setUint8(2, p.moving === true ? PRESENCE_FLAG_MOVING : 0)
  view.setUint32(3, p.seq)
  view.setUint16(7, Math.floor(p.time / 2 ** 32))
  view.setUint32(9, p.time % 2 ** 32)
  for (let i = 0; i < 3; i++) view.setFloat32(13 + 4 * i, p.position[i])
  for (let i = 0; i < 4; i++) view.setFloat32(25 + 4 * i, rotation[i])
  if (p.kind === 'full') {
    let at = PRESENCE_MOVE_FRAME_BYTES
    out[at++] = avatar.length
    out.set(avatar, at)
    at += avatar.length
    out[at++] = name.length
    out.set(name, at)
  }
  return out
}

/** Decodes a frame from a peer; throws MalformedPresenceError for anything that is not exactly one frame. */
export function decodePresence (bytes: Uint8Array): Presence {
  if (!(bytes instanceof Uint8Array)) fail('frame must be bytes')
  if (bytes.length < PRESENCE_MOVE_FRAME_BYTES) fail(`frame is ${bytes.length} bytes, under ${PRESENCE_MOVE_FRAME_BYTES}`)
  if (bytes.length > MAX_PRESENCE_FRAME_BYTES) fail(`frame is ${bytes.length} bytes, over ${MAX_PRESENCE_FRAME_BYTES}`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint8(0) !== PRESENCE_VERSION) fail(`unknown presence version ${view.getUint8(0)}`)
  const kindByte = view.getUint8(1)
  if (kindByte !== PRESENCE_KIND_MOVE && kindByte !== PRESENCE_KIND_FULL) fail(`unknown presence kind ${kindByte}`)
  const flags = view.getUint8(2)
  if ((flags & ~PRESENCE_FLAG_MOVING) !== 0) fail(`unknown presence flags ${flags}`)
  const moving = flags === PRESENCE_FLAG_MOVING
  const seq = view.getUint32(3)
  const time = view.getUint16(7) * 2 ** 32 + view.getUint32(9)
  const position: Vec3 = [view.getFloat32(13), view.getFloat32(17), view.getFloat32(21)]
  position.forEach((v, i) => { checkCoordinate(v, `position[${i}]`) })
  const rotation = unitQuat([view.getFloat32(25), view.getFloat32(29), view.getFloat32(33), view.getFloat32(37)], QUATERNION_NORM_TOLERANCE)
  if (kindByte === PRESENCE_KIND_MOVE) {
    if (bytes.length !== PRESENCE_MOVE_FRAME_BYTES) fail('trailing bytes after a move frame')
    return { kind: 'move', seq, time, position, rotation, moving }
  }
  let at = PRESENCE_MOVE_FRAME_BYTES
  const field = (max: number, what: string): Uint8Array => {
    if (at >= bytes.length) fail(`frame ends before ${what}`)
    const length = bytes[at++]
    if (length > max) fail(`${what} is ${length} bytes, over ${max}`)
    if (at + length > bytes.length) fail(`frame ends inside ${what}`)
    const out = bytes.subarray(at, at + length)
    at += length
    return out
  }
  const avatarBytes = field(MAX_AVATAR_BYTES, 'avatar')
  const nameBytes = field(MAX_DISPLAY_NAME_BYTES, 'name')
  if (at !== bytes.length) fail('trailing bytes after a full frame')
  let avatar: string | null = null
  if (avatarBytes.length > 0) {
    avatar = String.fromCharCode(...avatarBytes)
    checkAvatar(avatar)
  }
  let name: string
  try {
    name = strictUtf8.decode(nameBytes)
  } catch {
    fail('name is not valid UTF-8')
  }
  checkName(name, nameBytes)
  return { kind: 'full', seq, time, position, rotation, moving, avatar, name }
}

/** True when u32 sequence number a comes after b (serial-number arithmetic, RFC 1982). */
export function seqAfter (a: number, b: number): boolean {
  const d = (a - b) >>> 0
  return d !== 0 && d < 2 ** 31
}

/**
 * The receiver's view of one sender's frame stream: passes a frame only if its seq comes after
 * the last one passed (wrapping at 2³²), so late, duplicate and reordered frames are dropped.
 * After PRESENCE_TRACK_RESET_MS of silence any seq is taken, as the sender may have restarted.
 */
export class PresenceTrack {
  #last: number | undefined
  #lastAt = 0
  /** Frames refused so far. */
  dropped = 0

  /** Sequence number of the last frame passed. */
  get lastSeq (): number | undefined {
    return this.#last
  }

  /**
   * True when seq is newer than any passed so far (and records it); false to drop the frame.
   * Give `now` (ms) to let a long-silent track restart; without it only seq order counts.
   */
  accept (frame: { seq: number }, now?: number): boolean {
    const seq = frame?.seq
    if (!Number.isInteger(seq) || seq < 0 || seq > MAX_PRESENCE_SEQ) fail('seq must be a u32')
    const restarted = now !== undefined && now - this.#lastAt > PRESENCE_TRACK_RESET_MS
    if (this.#last === undefined || restarted || seqAfter(seq, this.#last)) {
      this.#last = seq
      if (now !== undefined) this.#lastAt = now
      return true
    }
    this.dropped++
    return false
  }

  /** Forgets the stream (a new stream from the same sender starts afresh). */
  reset (): void {
    this.#last = undefined
    this.#lastAt = 0
  }
}
