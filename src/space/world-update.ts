/**
 * The form of a world update, checked before any peer bytes reach Yjs: the limits, the error
 * classes, object values and a length-checked decoder of Yjs V1 updates (one client's map sets on
 * `objects`). Pure: bytes in, a decoded update or a named error out. The rules that judge an
 * update against a document are in world.ts.
 *
 * Peer bytes never reach Yjs before our own length-checked decoder has read all of them: Yjs and
 * lib0 still loop or eat memory on crafted input (V2 run-length bombs, yjs#687; pending structs
 * and deletes that wait forever; GC structs that push a client's clock to 2^52), and older lib0
 * looped on truncated varints (yjs#479, #498). Only the V1 format is accepted.
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { CID } from 'multiformats/cid'
import * as Y from 'yjs'
import { isDid } from '../identity/did.ts'
import { sha256 } from '../identity/hash.ts'

/** The root map of a world document. */
export const OBJECTS_KEY = 'objects'
/** Largest Yjs update we decode. */
export const MAX_WORLD_UPDATE_BYTES = 64 * 1024
/** Structs (object writes) in one update; its delete set may only delete what they overwrite. */
export const MAX_UPDATE_STRUCTS = 256
/** Objects one author may ever create (distinct ids written without an origin): the bound on the world that every peer can enforce alike. */
export const MAX_OBJECTS_PER_AUTHOR = 4096
/** Live objects in a world; the authoring helpers refuse to add more (a peer cannot enforce it alike: the count depends on arrival order). */
export const MAX_WORLD_OBJECTS = 16_384
/** Longest object id, in characters of [A-Za-z0-9_-]. */
export const MAX_OBJECT_ID_LENGTH = 64
/** Largest encoded object value (lib0 any encoding, as it sits in the update). */
export const MAX_OBJECT_VALUE_BYTES = 4096
/** Props on one object. */
export const MAX_OBJECT_PROPS = 32
/** Longest prop key, in characters of [A-Za-z0-9_.:-]. */
export const MAX_PROP_KEY_LENGTH = 64
/** Longest string prop, in UTF-8 bytes. */
export const MAX_PROP_STRING_BYTES = 1024
/** Longest model CID string. */
export const MAX_MODEL_LENGTH = 128
/** Highest and lowest y of a position, in metres. */
export const MAX_ALTITUDE = 10_000
/** Smallest and largest scale on each axis. */
export const MIN_SCALE = 1e-3
export const MAX_SCALE = 1e3
/** How far a rotation quaternion's length may be from 1. */
export const ROTATION_TOLERANCE = 1e-3
/** Updates World.offer holds while they wait for earlier ones (64 KiB each at most). */
export const DEFAULT_MAX_PENDING = 256
/** Largest state vector World.needed decodes. */
export const MAX_STATE_VECTOR_BYTES = 64 * 1024

/** The bytes are not a Yjs V1 update we can read: empty, truncated, trailing bytes, bad encoding. */
export class MalformedUpdateError extends Error {
  name = 'MalformedUpdateError'
}

/** Over MAX_WORLD_UPDATE_BYTES or MAX_UPDATE_STRUCTS. */
export class UpdateTooLargeError extends Error {
  name = 'UpdateTooLargeError'
}

/** A struct carries a clientID other than the author's. */
export class WrongClientError extends Error {
  name = 'WrongClientError'
}

/** Something other than a set on the `objects` map: GC/Skip structs, other content, other root types, nested types, right origins. */
export class UnsupportedStructError extends Error {
  name = 'UnsupportedStructError'
}

/** A bad object id or value, or a position outside the space. */
export class InvalidObjectError extends Error {
  name = 'InvalidObjectError'
}

/** An origin or deletion that no valid update could have: its own future, a non-object item, a delete of what it does not overwrite. */
export class InvalidReferenceError extends Error {
  name = 'InvalidReferenceError'
}

/** Depends on structs we do not hold yet (a clock gap, an unknown origin): retry once earlier updates arrive. */
export class MissingDependencyError extends Error {
  name = 'MissingDependencyError'
  /** A struct we lack (client, clock): retrying makes sense once we hold it. */
  readonly client: number
  readonly clock: number
  constructor (message: string, client: number, clock: number) {
    super(message)
    this.client = client
    this.clock = clock
  }
}

/** We hold exactly this update already (ignore it: not the sender's fault). */
export class DuplicateUpdateError extends Error {
  name = 'DuplicateUpdateError'
}

/** The update rewrites clocks we hold with other content, or overlaps them: its author equivocated. */
export class ConflictingUpdateError extends Error {
  name = 'ConflictingUpdateError'
}

/** The author may not change this object (not owner or editor, and outside parcels they own). */
export class EditNotAllowedError extends Error {
  name = 'EditNotAllowedError'
  readonly objectId: string
  constructor (objectId: string, message: string) {
    super(message)
    this.objectId = objectId
  }
}

/** Over MAX_OBJECTS_PER_AUTHOR (or, when authoring, MAX_WORLD_OBJECTS). */
export class ObjectLimitError extends Error {
  name = 'ObjectLimitError'
}

/** An authoring helper was asked to change an object the world does not have. */
export class UnknownObjectError extends Error {
  name = 'UnknownObjectError'
}

export type Vec3 = [number, number, number]
export type Quat = [number, number, number, number]
export type PropValue = string | number | boolean

export interface WorldObjectValue {
  /** CID string of the model asset. */
  model: string
  position: Vec3
  rotation: Quat
  scale: Vec3
  props: Record<string, PropValue>
}

export type WorldObject = WorldObjectValue

/** The space's extent on the x/z plane, in metres (inclusive). */
export interface Bounds { minX: number, maxX: number, minZ: number, maxZ: number }

/** The outside facts an update is judged by: pin them (policy, ledger height) so all peers pass the same. */
export interface EditContext {
  owner: string
  editors: ReadonlySet<string>
  bounds: Bounds
  /** Who owns the land parcel at (x, z), if anyone. */
  parcelOwnerAt: (x: number, z: number) => string | undefined
}

/** A client's clock range [clockStart, clockEnd) that one update adds. */
export interface UpdateRange { client: number, clockStart: number, clockEnd: number }

export interface AppliedUpdate extends UpdateRange {
  /** The object ids it wrote, sorted. */
  objects: string[]
}

export interface OfferResult {
  /** Applied now: the offered update and any held ones it unblocked, in order. */
  accepted: Array<{ id: string, applied: AppliedUpdate }>
  /** Refused for good. */
  rejected: Array<{ id: string, error: Error }>
  /** Already held (DuplicateUpdateError): nothing to do. */
  ignored: Array<{ id: string, error: Error }>
  /** Waiting for earlier updates. */
  held: string[]
  /** Held ones dropped (oldest first) to stay within maxPending; they may come again by sync. */
  dropped: string[]
}

export interface WorldInit {
  /** Updates offer() holds while they wait for earlier ones; DEFAULT_MAX_PENDING. */
  maxPending?: number
}

/** One object write in an update, as decoded. */
export interface WorldStruct {
  clock: number
  /** The item it overwrites, as its author saw it (null: it saw no item under this key). */
  origin: { client: number, clock: number } | null
  /** The object id, when written without an origin (else it is the origin's). */
  key: string | null
  value: WorldObjectValue | null
}

/** A decoded update: one client's structs from clockStart, and the items it deletes. */
export interface WorldUpdate {
  client: number
  clockStart: number
  clockEnd: number
  structs: WorldStruct[]
  deletes: Array<{ client: number, clock: number, len: number }>
}

const ID_PATTERN = /^[A-Za-z0-9_-]+$/
const PROP_KEY_PATTERN = /^[A-Za-z0-9_.:-]+$/
const VALUE_KEYS = ['model', 'position', 'rotation', 'scale', 'props']
export const CONTENT_ANY = 8
export const BIT_PARENT_SUB = 32
const BIT_RIGHT_ORIGIN = 64
export const BIT_ORIGIN = 128
const utf8 = new TextEncoder()

// -- identity --------------------------------------------------------------------------------

/**
 * The Yjs clientID an author writes with: 53 bits of SHA-256(did). Yjs makes its own ids as
 * random uint32 but encodes clients as varuints up to 2^53 - 1 (the range other Yjs
 * implementations keep to for JS); 53 bits make collisions between authors negligible.
 */
export function clientIdForDid (did: string): number {
  const h = sha256(did)
  return (h[0] & 0x1f) * 2 ** 48 + new DataView(h.buffer, h.byteOffset, h.byteLength).getUint16(1) * 2 ** 32 + new DataView(h.buffer, h.byteOffset, h.byteLength).getUint32(3)
}

/** A new Y.Doc as World keeps it: deleted values are kept (gc off), and the objects map exists. */
export function createWorldDoc (): Y.Doc {
  const doc = new Y.Doc({ gc: false })
  doc.getMap(OBJECTS_KEY)
  return doc
}

// -- values ----------------------------------------------------------------------------------

/** Checks an object id; InvalidObjectError otherwise. */
export function checkObjectId (id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_OBJECT_ID_LENGTH || !ID_PATTERN.test(id)) {
    throw new InvalidObjectError(`object id must be 1 to ${MAX_OBJECT_ID_LENGTH} characters of [A-Za-z0-9_-]`)
  }
}

function finite (v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidObjectError(`${field} must be a finite number`)
  return v
}

function numbers (v: unknown, n: number, field: string): number[] {
  if (!Array.isArray(v) || v.length !== n) throw new InvalidObjectError(`${field} must be ${n} numbers`)
  return v.map((x, i) => finite(x, `${field}[${i}]`))
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  if (v == null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/**
 * Checks an object value's shape without the space's bounds (see checkInBounds); returns a copy
 * with its keys in canonical order. InvalidObjectError otherwise.
 */
export function checkObjectValue (value: unknown): WorldObjectValue {
  if (!isPlainObject(value)) throw new InvalidObjectError('an object value must be a map')
  const keys = Object.keys(value)
  if (keys.length !== VALUE_KEYS.length || !VALUE_KEYS.every(k => Object.hasOwn(value, k))) {
    throw new InvalidObjectError(`an object value has exactly ${VALUE_KEYS.join(', ')}`)
  }
  const model = value.model
  if (typeof model !== 'string' || model.length === 0 || model.length > MAX_MODEL_LENGTH) throw new InvalidObjectError('model must be a CID string')
  let canonical: string
  try { canonical = CID.parse(model).toString() } catch { throw new InvalidObjectError('model must be a CID string') }
  if (canonical !== model) throw new InvalidObjectError('model must be a CID in its canonical string form')
  const position = numbers(value.position, 3, 'position') as Vec3
  if (Math.abs(position[1]) > MAX_ALTITUDE) throw new InvalidObjectError(`position y must be within ±${MAX_ALTITUDE}`)
  const rotation = numbers(value.rotation, 4, 'rotation') as Quat
  const norm = Math.hypot(...rotation)
  if (!(Math.abs(norm - 1) <= ROTATION_TOLERANCE)) throw new InvalidObjectError('rotation must be a unit quaternion')
  const scale = numbers(value.scale, 3, 'scale') as Vec3
  if (scale.some(s => s < MIN_SCALE || s > MAX_SCALE)) throw new InvalidObjectError(`scale must be within [${MIN_SCALE}, ${MAX_SCALE}]`)
  if (!isPlainObject(value.props)) throw new InvalidObjectError('props must be a map')
  const propKeys = Object.keys(value.props)
  if (propKeys.length > MAX_OBJECT_PROPS) throw new InvalidObjectError(`an object has at most ${MAX_OBJECT_PROPS} props`)
  const props: Record<string, PropValue> = {}
  for (const k of propKeys) {
    if (k.length > MAX_PROP_KEY_LENGTH || !PROP_KEY_PATTERN.test(k) || k === '__proto__') {
      throw new InvalidObjectError(`prop keys are 1 to ${MAX_PROP_KEY_LENGTH} characters of [A-Za-z0-9_.:-]`)
    }
    const v = value.props[k]
    if (typeof v === 'string') {
      if (utf8.encode(v).length > MAX_PROP_STRING_BYTES) throw new InvalidObjectError(`prop ${k} is over ${MAX_PROP_STRING_BYTES} bytes`)
    } else if (typeof v === 'number') {
      finite(v, `prop ${k}`)
    } else if (typeof v !== 'boolean') {
      throw new InvalidObjectError(`prop ${k} must be a string, number or boolean`)
    }
    props[k] = v
  }
  const out: WorldObjectValue = { model, position, rotation, scale, props }
  const size = encodedSize(out)
  if (size > MAX_OBJECT_VALUE_BYTES) throw new InvalidObjectError(`object value is ${size} bytes, over ${MAX_OBJECT_VALUE_BYTES}`)
  return out
}

/** Whether a value's position lies in the space; InvalidObjectError otherwise. */
export function checkInBounds (value: WorldObjectValue, bounds: Bounds, id: string): void {
  const [x, , z] = value.position
  if (!(x >= bounds.minX && x <= bounds.maxX && z >= bounds.minZ && z <= bounds.maxZ)) {
    throw new InvalidObjectError(`object ${id} at (${x}, ${z}) is outside the space`)
  }
}

function encodedSize (value: unknown): number {
  const enc = encoding.createEncoder()
  encoding.writeAny(enc, value as never)
  return encoding.length(enc)
}

export function sameValue (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b) || a === b
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]))
  }
  if (a == null || b == null || typeof a !== 'object' || typeof b !== 'object') return false
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  return ka.length === kb.length && ka.every(k => Object.hasOwn(b, k) && sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}

// -- decoding --------------------------------------------------------------------------------

function need (d: decoding.Decoder, n: number): void {
  if (d.arr.length - d.pos < n) throw new MalformedUpdateError('update is truncated')
}

function readByte (d: decoding.Decoder): number {
  need(d, 1)
  return d.arr[d.pos++]
}

export function readUint (d: decoding.Decoder): number {
  need(d, 1)
  return decoding.readVarUint(d)
}

/** A count that each counted thing needs at least `bytesEach` bytes for: never more than what is left. */
export function readCount (d: decoding.Decoder, bytesEach: number, max: number, what: string): number {
  const n = readUint(d)
  if (n > max) throw new UpdateTooLargeError(`${n} ${what}, over ${max}`)
  need(d, n * bytesEach)
  return n
}

/** A string, read by lib0 exactly as Yjs will read it, after checking its length. */
function readString (d: decoding.Decoder, maxBytes: number): string {
  const start = d.pos
  const len = readUint(d)
  if (len > maxBytes) throw new MalformedUpdateError(`string of ${len} bytes, over ${maxBytes}`)
  need(d, len)
  d.pos = start
  return decoding.readVarString(d)
}

/**
 * A lib0 `any` value restricted to what an object value may hold (null, booleans, numbers,
 * strings, arrays, maps), with bounded depth and lengths. Leaves are read by lib0 itself so the
 * result is what Yjs will store. Map keys may not repeat or be __proto__ (lib0 assigns them onto
 * a plain object, where either would make Yjs's value differ from the one we checked).
 */
function readValue (d: decoding.Decoder, depth: number): unknown {
  const type = readByte(d)
  switch (type) {
    case 126: return null
    case 125: need(d, 1); return decoding.readVarInt(d)
    case 124: need(d, 4); return decoding.readFloat32(d)
    case 123: need(d, 8); return decoding.readFloat64(d)
    case 121: return false
    case 120: return true
    case 119: return readString(d, MAX_OBJECT_VALUE_BYTES)
    case 118: {
      if (depth >= 2) throw new InvalidObjectError('object values nest two levels at most')
      const n = readCount(d, 2, MAX_OBJECT_PROPS, 'map entries')
      const out: Record<string, unknown> = {}
      for (let i = 0; i < n; i++) {
        const key = readString(d, MAX_OBJECT_VALUE_BYTES)
        if (key === '__proto__' || Object.hasOwn(out, key)) throw new InvalidObjectError(`bad or repeated map key ${JSON.stringify(key)}`)
        out[key] = readValue(d, depth + 1)
      }
      return out
    }
    case 117: {
      if (depth >= 2) throw new InvalidObjectError('object values nest two levels at most')
      const n = readCount(d, 1, 4, 'array elements')
      const out: unknown[] = []
      for (let i = 0; i < n; i++) out.push(readValue(d, depth + 1))
      return out
    }
    default:
      throw new InvalidObjectError(`unsupported value type ${type} (undefined, bigint and binary are not allowed)`)
  }
}

/**
 * Decodes and checks an update's form, with no document: one client, 1..MAX_UPDATE_STRUCTS map
 * sets on `objects` (ContentAny of one value, no right origin), valid ids and values, a delete
 * set that only deletes items the structs overwrite, and no trailing bytes. Throws
 * MalformedUpdateError, UpdateTooLargeError, WrongClientError (structs of several clients),
 * UnsupportedStructError, InvalidObjectError or InvalidReferenceError.
 */
export function decodeWorldUpdate (update: Uint8Array): WorldUpdate {
  if (!(update instanceof Uint8Array)) throw new MalformedUpdateError('an update is bytes')
  if (update.length === 0) throw new MalformedUpdateError('empty update')
  if (update.length > MAX_WORLD_UPDATE_BYTES) throw new UpdateTooLargeError(`update is ${update.length} bytes, over ${MAX_WORLD_UPDATE_BYTES}`)
  try {
    return decodeChecked(decoding.createDecoder(update))
  } catch (err) {
    if (isWorldError(err)) throw err
    throw new MalformedUpdateError(`undecodable update: ${(err as Error)?.message ?? String(err)}`)
  }
}

function isWorldError (err: unknown): boolean {
  return err instanceof MalformedUpdateError || err instanceof UpdateTooLargeError || err instanceof WrongClientError ||
    err instanceof UnsupportedStructError || err instanceof InvalidObjectError || err instanceof InvalidReferenceError
}

function decodeChecked (d: decoding.Decoder): WorldUpdate {
  const clients = readUint(d)
  if (clients === 0) throw new MalformedUpdateError('update has no structs')
  if (clients > (d.arr.length - d.pos) / 4) throw new MalformedUpdateError(`update claims ${clients} clients in ${d.arr.length - d.pos} bytes`)
  if (clients > 1) throw new WrongClientError(`update carries structs of ${clients} clients; an author writes as one`)
  const n = readCount(d, 0, MAX_UPDATE_STRUCTS, 'structs')
  if (n === 0) throw new MalformedUpdateError('update has no structs')
  const client = readUint(d)
  const clockStart = readUint(d)
  if (clockStart + n > Number.MAX_SAFE_INTEGER) throw new MalformedUpdateError('clock out of range')
  need(d, n * 2) // each struct is an info byte and more
  const structs: WorldStruct[] = []
  for (let i = 0; i < n; i++) {
    const clock = clockStart + i
    const info = readByte(d)
    const ref = info & 31
    if (ref === 0 || ref === 10) throw new UnsupportedStructError(`struct ${client}:${clock} is a ${ref === 0 ? 'GC' : 'Skip'} struct`)
    if (ref !== CONTENT_ANY) throw new UnsupportedStructError(`struct ${client}:${clock} has content type ${ref}; objects are plain values`)
    if ((info & BIT_RIGHT_ORIGIN) !== 0) throw new UnsupportedStructError(`struct ${client}:${clock} has a right origin; map sets have none`)
    if ((info & BIT_PARENT_SUB) === 0) throw new UnsupportedStructError(`struct ${client}:${clock} is not a map entry`)
    let origin: WorldStruct['origin'] = null
    let key: string | null = null
    if ((info & BIT_ORIGIN) !== 0) {
      origin = { client: readUint(d), clock: readUint(d) }
      if (origin.client === client && origin.clock >= clock) throw new InvalidReferenceError(`struct ${client}:${clock} names its own future as origin`)
    } else {
      const parentInfo = readUint(d)
      if (parentInfo !== 1) throw new UnsupportedStructError(`struct ${client}:${clock} is inside a nested type`)
      const root = readString(d, MAX_WORLD_UPDATE_BYTES)
      if (root !== OBJECTS_KEY) throw new UnsupportedStructError(`struct ${client}:${clock} writes root type ${JSON.stringify(root)}`)
      key = readString(d, MAX_WORLD_UPDATE_BYTES)
      checkObjectId(key)
    }
    if (readUint(d) !== 1) throw new UnsupportedStructError(`struct ${client}:${clock} must hold exactly one value`)
    const start = d.pos
    const raw = readValue(d, 0)
    if (d.pos - start > MAX_OBJECT_VALUE_BYTES) throw new InvalidObjectError(`object value is ${d.pos - start} bytes, over ${MAX_OBJECT_VALUE_BYTES}`)
    if (raw === null && origin === null) throw new InvalidObjectError(`struct ${client}:${clock} removes object ${key ?? ''} it never saw`)
    structs.push({ clock, origin, key, value: raw === null ? null : checkObjectValue(raw) })
  }
  const clockEnd = clockStart + n
  // The delete set: only the items the structs overwrite (their origins), each held already.
  const origins = new Set(structs.filter(s => s.origin != null).map(s => `${s.origin!.client}:${s.origin!.clock}`))
  const deletes: WorldUpdate['deletes'] = []
  let deleted = 0
  const dsClients = readCount(d, 2, n, 'delete-set clients')
  for (let c = 0; c < dsClients; c++) {
    const dsClient = readUint(d)
    const ranges = readCount(d, 2, n, 'delete ranges')
    for (let r = 0; r < ranges; r++) {
      const clock = readUint(d)
      const len = readUint(d)
      if (len === 0) throw new MalformedUpdateError('empty delete range')
      deleted += len
      if (deleted > n) throw new InvalidReferenceError('update deletes more items than it overwrites')
      for (let k = clock; k < clock + len; k++) {
        if (dsClient === client && k >= clockStart) throw new InvalidReferenceError(`update deletes its own item ${client}:${k}`)
        if (!origins.has(`${dsClient}:${k}`)) throw new InvalidReferenceError(`update deletes ${dsClient}:${k}, which it does not overwrite`)
      }
      deletes.push({ client: dsClient, clock, len })
    }
  }
  if (d.pos !== d.arr.length) throw new MalformedUpdateError(`${d.arr.length - d.pos} bytes after the update`)
  return { client, clockStart, clockEnd, structs, deletes }
}
