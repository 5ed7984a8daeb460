/**
 * The persistent world of a space: the rules every honest peer applies to the Yjs updates that
 * change it. Pure apart from the Y.Doc a World owns: no I/O, no clock, outside facts (owner,
 * editors, bounds, parcels) come in an EditContext.
 *
 * One Yjs document per space, one root Y.Map `objects`: key = object id, value = a plain object
 * { model, position, rotation, scale, props }, or null as a removal tombstone (never
 * Y.Map.delete). So every valid update is a list of map sets by one client, and nothing else.
 *
 * Each update arrives inside its author's signed envelope. Its author writes as the Yjs client
 * clientIdForDid(author), its clocks continue exactly from what we hold of that client, and each
 * change is judged from the update's own causal context (the item it overwrites, found by its
 * immutable ID), never from what this peer's doc looks like now: so all honest peers accept the
 * same updates whatever order they arrive in. The doc keeps deleted values (gc off) so that an
 * overwritten value can still be judged after someone else overwrote it too.
 *
 * Peer bytes never reach Yjs before our own length-checked decoder has read all of them: Yjs and
 * lib0 still loop or eat memory on crafted input (V2 run-length bombs, yjs#687; pending structs
 * and deletes that wait forever; GC structs that push a client's clock to 2^52), and older lib0
 * looped on truncated varints (yjs#479, #498). Only the V1 format is accepted.
 */
import { createHash } from 'node:crypto'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import { CID } from 'multiformats/cid'
import * as Y from 'yjs'
import { isDid } from '../identity/did.ts'

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
const CONTENT_ANY = 8
const BIT_PARENT_SUB = 32
const BIT_RIGHT_ORIGIN = 64
const BIT_ORIGIN = 128
const utf8 = new TextEncoder()

// -- identity --------------------------------------------------------------------------------

/**
 * The Yjs clientID an author writes with: 53 bits of SHA-256(did). Yjs makes its own ids as
 * random uint32 but encodes clients as varuints up to 2^53 - 1 (the range other Yjs
 * implementations keep to for JS); 53 bits make collisions between authors negligible.
 */
export function clientIdForDid (did: string): number {
  const h = createHash('sha256').update(did, 'utf8').digest()
  return (h[0] & 0x1f) * 2 ** 48 + h.readUIntBE(1, 6)
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

function sameValue (a: unknown, b: unknown): boolean {
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

function readUint (d: decoding.Decoder): number {
  need(d, 1)
  return decoding.readVarUint(d)
}

/** A count that each counted thing needs at least `bytesEach` bytes for: never more than what is left. */
function readCount (d: decoding.Decoder, bytesEach: number, max: number, what: string): number {
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

// -- the rules -------------------------------------------------------------------------------

function objectsMap (doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap(OBJECTS_KEY)
}

interface HeldValue { key: string, value: WorldObjectValue | null }

/** The key and value of the item at `id` in the doc; InvalidReferenceError if it is not an object write. */
function heldValue (doc: Y.Doc, client: number, clock: number): HeldValue {
  const item = Y.getItem(doc.store, Y.createID(client, clock)) as Y.Item | Y.GC
  if (!(item instanceof Y.Item) || item.parent !== objectsMap(doc) || item.parentSub == null || !(item.content instanceof Y.ContentAny)) {
    throw new InvalidReferenceError(`${client}:${clock} is not an object write`)
  }
  const value = item.content.arr[clock - item.id.clock] as WorldObjectValue | null | undefined
  return { key: item.parentSub, value: value ?? null }
}

/** The origin ID of the struct at (client, clock) as the doc holds it (merged items: the one before). */
function heldOrigin (doc: Y.Doc, client: number, clock: number): { client: number, clock: number } | null {
  const item = Y.getItem(doc.store, Y.createID(client, clock))
  if (item.id.clock < clock) return { client, clock: clock - 1 }
  return item.origin == null ? null : { client: item.origin.client, clock: item.origin.clock }
}

/** Object ids each client of a doc has created (written without origin), scanned incrementally. */
const createdCache = new WeakMap<Y.Doc, Map<number, { clock: number, keys: Set<string> }>>()

function createdBy (doc: Y.Doc, client: number): Set<string> {
  let perDoc = createdCache.get(doc)
  if (perDoc == null) { perDoc = new Map(); createdCache.set(doc, perDoc) }
  let entry = perDoc.get(client)
  if (entry == null) { entry = { clock: 0, keys: new Set() }; perDoc.set(client, entry) }
  const state = Y.getState(doc.store, client)
  if (entry.clock < state) {
    const structs = doc.store.clients.get(client) ?? []
    for (let i = Y.findIndexSS(structs, entry.clock); i < structs.length; i++) {
      const s = structs[i]
      if (s instanceof Y.Item && s.id.clock >= entry.clock && s.origin == null && s.parentSub != null) entry.keys.add(s.parentSub)
    }
    entry.clock = state
  }
  return entry.keys
}

/** Whether `author` may change an object from `before` to `after`, both as the update names them. */
function mayEdit (author: string, ctx: EditContext, before: WorldObjectValue | null, after: WorldObjectValue | null): boolean {
  if (author === ctx.owner || ctx.editors.has(author)) return true
  const ownsAt = (v: WorldObjectValue): boolean => ctx.parcelOwnerAt(v.position[0], v.position[2]) === author
  return (before == null || ownsAt(before)) && (after == null || ownsAt(after))
}

/** The duplicate-or-conflict verdict for an update wholly inside what we hold of its client. */
function duplicateOrConflict (doc: Y.Doc, u: WorldUpdate): never {
  for (const s of u.structs) {
    const held = heldValue(doc, u.client, s.clock)
    const origin = heldOrigin(doc, u.client, s.clock)
    const sameOrigin = origin == null ? s.origin == null : s.origin != null && origin.client === s.origin.client && origin.clock === s.origin.clock
    if (!sameOrigin || (s.key != null && s.key !== held.key) || !sameValue(s.value, held.value)) {
      throw new ConflictingUpdateError(`update rewrites ${u.client}:${s.clock}, which we hold with other content`)
    }
  }
  for (const del of u.deletes) {
    for (let k = del.clock; k < del.clock + del.len; k++) {
      if (!Y.getItem(doc.store, Y.createID(del.client, k)).deleted) throw new ConflictingUpdateError(`update deletes ${del.client}:${k}, which our copy of it did not`)
    }
  }
  throw new DuplicateUpdateError(`update ${u.client}:${u.clockStart}..${u.clockEnd} is held already`)
}

/**
 * Judges `author`'s update against `doc` without changing it: the AppliedUpdate it would give,
 * or the named error. Order of verdicts: form (decodeWorldUpdate), author's client, duplicate or
 * conflict, clock gap (MissingDependencyError), then each struct: a struct whose origin we hold
 * is judged (bounds, edit rights) even if another one's origin is missing, so an update that is
 * bad wherever it lands is rejected at once; otherwise MissingDependencyError; then the
 * per-author object limit.
 */
export function checkWorldUpdate (doc: Y.Doc, author: string, update: Uint8Array, ctx: EditContext): AppliedUpdate {
  if (doc.gc) throw new TypeError('a world doc keeps deleted values: create it with createWorldDoc()')
  if (!isDid(author)) throw new TypeError('author must be a did:key')
  const u = decodeWorldUpdate(update)
  const client = clientIdForDid(author)
  if (u.client !== client) throw new WrongClientError(`update writes as client ${u.client}; ${author} writes as ${client}`)
  const state = Y.getState(doc.store, client)
  if (u.clockEnd <= state) duplicateOrConflict(doc, u)
  if (u.clockStart < state) throw new ConflictingUpdateError(`update ${client}:${u.clockStart}..${u.clockEnd} overlaps the ${state} clocks we hold`)
  if (u.clockStart > state) throw new MissingDependencyError(`update starts at clock ${u.clockStart} of ${author}; we hold ${state}`, client, u.clockStart - 1)
  let missing: MissingDependencyError | null = null
  const keys: string[] = new Array(u.structs.length)
  const newKeys = new Set<string>()
  for (let i = 0; i < u.structs.length; i++) {
    const s = u.structs[i]
    let before: HeldValue | null = null
    if (s.origin != null) {
      const o = s.origin
      if (o.client === client && o.clock >= u.clockStart) {
        before = { key: keys[o.clock - u.clockStart], value: u.structs[o.clock - u.clockStart].value }
        if (before.key == null) continue // its own origin is missing
      } else if (o.clock >= Y.getState(doc.store, o.client)) {
        missing ??= new MissingDependencyError(`struct ${client}:${s.clock} overwrites ${o.client}:${o.clock}, which we do not hold`, o.client, o.clock)
        continue
      } else {
        before = heldValue(doc, o.client, o.clock)
      }
    }
    const key = before?.key ?? s.key!
    keys[i] = key
    if (s.origin == null) newKeys.add(key)
    if (s.value != null) checkInBounds(s.value, ctx.bounds, key)
    if (!mayEdit(author, ctx, before?.value ?? null, s.value)) {
      throw new EditNotAllowedError(key, `${author} may not change object ${key} here: it is neither owner nor editor, and not both the old and the new place lie in parcels it owns`)
    }
  }
  if (missing != null) throw missing
  if (newKeys.size > 0) {
    const created = createdBy(doc, client)
    let total = created.size
    for (const k of newKeys) if (!created.has(k)) total++
    if (total > MAX_OBJECTS_PER_AUTHOR) throw new ObjectLimitError(`${author} would have created ${total} objects, over ${MAX_OBJECTS_PER_AUTHOR}`)
  }
  return { client, clockStart: u.clockStart, clockEnd: u.clockEnd, objects: [...new Set(keys)].sort() }
}

/**
 * Validates `author`'s update (checkWorldUpdate) and applies it to `doc`. Throws the named
 * errors and leaves the doc untouched on any of them; Yjs never sees bytes we did not read.
 */
export function applyWorldUpdate (doc: Y.Doc, author: string, update: Uint8Array, ctx: EditContext): AppliedUpdate {
  if (!(update instanceof Uint8Array)) throw new MalformedUpdateError('an update is bytes')
  if (update.length > MAX_WORLD_UPDATE_BYTES) throw new UpdateTooLargeError(`update is ${update.length} bytes, over ${MAX_WORLD_UPDATE_BYTES}`)
  // Our own copy (new Uint8Array copies, Buffer#slice would not): the caller's bytes may be a view into a larger buffer, or change.
  const bytes = new Uint8Array(update)
  const applied = checkWorldUpdate(doc, author, bytes, ctx)
  Y.applyUpdate(doc, bytes, author)
  if (doc.store.pendingStructs != null || doc.store.pendingDs != null) {
    // Cannot happen after checkWorldUpdate; never let Yjs keep half an update around.
    doc.store.pendingStructs = null
    doc.store.pendingDs = null
    throw new Error(`world update ${applied.client}:${applied.clockStart} left pending structs: a bug in checkWorldUpdate`)
  }
  return applied
}

// -- the world -------------------------------------------------------------------------------

/** A held update, and the struct it waits for: it is retried only once we hold that. */
interface Held { id: string, author: string, update: Uint8Array, ctx: EditContext, waits: { client: number, clock: number } }

/** One space's world: its Y.Doc, the rules around it, and the updates waiting for earlier ones. */
export class World {
  readonly doc: Y.Doc
  private readonly maxPending: number
  private readonly pending = new Map<string, Held>()

  constructor (init: WorldInit = {}) {
    this.doc = createWorldDoc()
    this.maxPending = Math.max(0, init.maxPending ?? DEFAULT_MAX_PENDING)
  }

  /** Validates and applies one author's update; throws the named errors. */
  apply (author: string, update: Uint8Array, ctx: EditContext): AppliedUpdate {
    return applyWorldUpdate(this.doc, author, update, ctx)
  }

  /** What apply would return, without applying. */
  check (author: string, update: Uint8Array, ctx: EditContext): AppliedUpdate {
    return checkWorldUpdate(this.doc, author, update, ctx)
  }

  /**
   * Offers an update that may arrive before its dependencies: applies it, or holds it (at most
   * maxPending, oldest dropped) when it throws MissingDependencyError; after every acceptance the
   * held ones are retried, until none moves.
   */
  offer (id: string, author: string, update: Uint8Array, ctx: EditContext): OfferResult {
    const result: OfferResult = { accepted: [], rejected: [], ignored: [], held: [], dropped: [] }
    if (this.pending.has(id)) {
      result.held.push(id)
      return result
    }
    const accepted = this.attempt({ id, author, update, ctx, waits: { client: 0, clock: 0 } }, result, true)
    if (accepted) this.retry(result)
    return result
  }

  /** Ids of the updates held, oldest first. */
  pendingIds (): string[] {
    return [...this.pending.keys()]
  }

  /** Forgets a held update (say its record was dropped elsewhere). */
  forget (id: string): boolean {
    return this.pending.delete(id)
  }

  private attempt (h: Held, result: OfferResult, fresh: boolean): boolean {
    try {
      const applied = this.apply(h.author, h.update, h.ctx)
      if (!fresh) this.pending.delete(h.id)
      result.accepted.push({ id: h.id, applied })
      return true
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      if (error instanceof MissingDependencyError) {
        h.waits = { client: error.client, clock: error.clock }
        if (fresh) this.hold(h, result)
        return false
      }
      if (!fresh) this.pending.delete(h.id)
      if (error instanceof DuplicateUpdateError) result.ignored.push({ id: h.id, error })
      else result.rejected.push({ id: h.id, error })
      return false
    }
  }

  private hold (h: Held, result: OfferResult): void {
    this.pending.set(h.id, { ...h, update: new Uint8Array(h.update) })
    result.held.push(h.id)
    while (this.pending.size > this.maxPending) {
      const oldest = this.pending.keys().next().value as string
      this.pending.delete(oldest)
      result.dropped.push(oldest)
      const i = result.held.indexOf(oldest)
      if (i >= 0) result.held.splice(i, 1)
    }
  }

  private retry (result: OfferResult): void {
    let moved = true
    while (moved && this.pending.size > 0) {
      moved = false
      for (const h of [...this.pending.values()]) {
        if (!this.pending.has(h.id) || Y.getState(this.doc.store, h.waits.client) <= h.waits.clock) continue
        if (this.attempt(h, result, false)) moved = true
      }
    }
  }

  /** The live objects by id (tombstones left out); copies, safe to change. */
  objects (): Map<string, WorldObject> {
    const out = new Map<string, WorldObject>()
    for (const [id, v] of objectsMap(this.doc).entries()) {
      if (v != null) out.set(id, copyValue(v as WorldObjectValue))
    }
    return out
  }

  /** One live object, or undefined. */
  get (id: string): WorldObject | undefined {
    const v = objectsMap(this.doc).get(id) as WorldObjectValue | null | undefined
    return v == null ? undefined : copyValue(v)
  }

  /** The Yjs state vector (V1) of the doc, for sync. */
  stateVector (): Uint8Array {
    return Y.encodeStateVector(this.doc)
  }

  /** Of the given update ranges, those a peer with state vector `sv` lacks (clockEnd > sv[client]), in order. */
  static needed<R extends UpdateRange> (sv: Uint8Array, ranges: Iterable<R>): R[] {
    const held = decodeStateVector(sv)
    const out: R[] = []
    for (const r of ranges) if (r.clockEnd > (held.get(r.client) ?? 0)) out.push(r)
    return out
  }
}

function copyValue (v: WorldObjectValue): WorldObjectValue {
  return { model: v.model, position: [...v.position], rotation: [...v.rotation], scale: [...v.scale], props: { ...v.props } }
}

/** A V1 state vector from a peer, read with the same bounds as updates; MalformedUpdateError otherwise. */
export function decodeStateVector (sv: Uint8Array): Map<number, number> {
  if (!(sv instanceof Uint8Array) || sv.length > MAX_STATE_VECTOR_BYTES) throw new MalformedUpdateError('state vector is not bytes or over its limit')
  try {
    const d = decoding.createDecoder(sv)
    const n = readCount(d, 2, MAX_STATE_VECTOR_BYTES, 'state-vector entries')
    const out = new Map<number, number>()
    for (let i = 0; i < n; i++) {
      const client = readUint(d)
      out.set(client, readUint(d))
    }
    if (d.pos !== d.arr.length) throw new MalformedUpdateError('bytes after the state vector')
    return out
  } catch (err) {
    if (err instanceof MalformedUpdateError) throw err
    throw new MalformedUpdateError(`undecodable state vector: ${(err as Error)?.message ?? String(err)}`)
  }
}

// -- authoring -------------------------------------------------------------------------------

/**
 * Builds one update, as `author` against the world's current doc (which it does not change),
 * that sets each given object id to a value or to null (removal). Encodes what Y.Map.set would:
 * each struct names the item it overwrites as origin, and the delete set deletes those items.
 * Checks ids and values (not bounds or edit rights: World.check or apply judge those).
 */
export function setObjects (world: World, author: string, entries: Iterable<readonly [string, WorldObjectValue | null]>): Uint8Array {
  const list = [...entries]
  if (list.length === 0) throw new TypeError('nothing to write')
  if (list.length > MAX_UPDATE_STRUCTS) throw new UpdateTooLargeError(`${list.length} writes in one update, over ${MAX_UPDATE_STRUCTS}`)
  const doc = world.doc
  const map = objectsMap(doc)
  const client = clientIdForDid(author)
  const clock = Y.getState(doc.store, client)
  const seen = new Set<string>()
  let live = 0
  for (const v of map.values()) if (v != null) live++
  const enc = encoding.createEncoder()
  encoding.writeVarUint(enc, 1)
  encoding.writeVarUint(enc, list.length)
  encoding.writeVarUint(enc, client)
  encoding.writeVarUint(enc, clock)
  const deletes: Y.ID[] = []
  for (const [id, value] of list) {
    checkObjectId(id)
    if (seen.has(id)) throw new TypeError(`object ${id} written twice in one update`)
    seen.add(id)
    const current = map._map.get(id)
    const held = current == null || current.deleted ? undefined : map.get(id)
    if (value === null && held == null) throw new UnknownObjectError(`no object ${id} to remove`)
    const checked = value === null ? null : checkObjectValue(value)
    if (checked != null && held == null && ++live > MAX_WORLD_OBJECTS) throw new ObjectLimitError(`the world holds ${MAX_WORLD_OBJECTS} objects already`)
    if (checked == null && held != null) live--
    if (current != null) {
      const origin = current.lastId
      encoding.writeUint8(enc, CONTENT_ANY | BIT_ORIGIN | BIT_PARENT_SUB)
      encoding.writeVarUint(enc, origin.client)
      encoding.writeVarUint(enc, origin.clock)
      if (!current.deleted) deletes.push(origin)
    } else {
      encoding.writeUint8(enc, CONTENT_ANY | BIT_PARENT_SUB)
      encoding.writeVarUint(enc, 1)
      encoding.writeVarString(enc, OBJECTS_KEY)
      encoding.writeVarString(enc, id)
    }
    encoding.writeVarUint(enc, 1)
    encoding.writeAny(enc, checked as never)
  }
  // The delete set, as Yjs writes it: clients high to low, clocks ascending, adjacent ranges merged.
  const byClient = new Map<number, number[]>()
  for (const id of deletes) byClient.set(id.client, [...(byClient.get(id.client) ?? []), id.clock])
  const clients = [...byClient.keys()].sort((a, b) => b - a)
  encoding.writeVarUint(enc, clients.length)
  for (const c of clients) {
    const clocks = byClient.get(c)!.sort((a, b) => a - b)
    const ranges: Array<[number, number]> = []
    for (const k of clocks) {
      const last = ranges.at(-1)
      if (last != null && last[0] + last[1] === k) last[1]++
      else ranges.push([k, 1])
    }
    encoding.writeVarUint(enc, c)
    encoding.writeVarUint(enc, ranges.length)
    for (const [k, len] of ranges) {
      encoding.writeVarUint(enc, k)
      encoding.writeVarUint(enc, len)
    }
  }
  const update = encoding.toUint8Array(enc)
  if (update.length > MAX_WORLD_UPDATE_BYTES) throw new UpdateTooLargeError(`update is ${update.length} bytes, over ${MAX_WORLD_UPDATE_BYTES}`)
  return update
}

/** An update placing (or replacing) object `id`. */
export function placeObject (world: World, author: string, id: string, value: WorldObjectValue): Uint8Array {
  return setObjects(world, author, [[id, value]])
}

/** An update moving, turning or scaling object `id`; UnknownObjectError if the world lacks it. */
export function moveObject (world: World, author: string, id: string, transform: Partial<Pick<WorldObjectValue, 'position' | 'rotation' | 'scale'>>): Uint8Array {
  const current = world.get(id)
  if (current == null) throw new UnknownObjectError(`no object ${id} to move`)
  return setObjects(world, author, [[id, {
    ...current,
    position: transform.position ?? current.position,
    rotation: transform.rotation ?? current.rotation,
    scale: transform.scale ?? current.scale
  }]])
}

/** An update removing object `id` (a null tombstone); UnknownObjectError if the world lacks it. */
export function removeObject (world: World, author: string, id: string): Uint8Array {
  return setObjects(world, author, [[id, null]])
}
