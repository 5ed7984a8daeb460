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
 * overwritten value can still be judged after someone else overwrote it too. Updates are decoded
 * and their form checked first, by world-update.ts (re-exported here).
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { isDid } from '../identity/did.ts'
import {
  BIT_ORIGIN, BIT_PARENT_SUB, CONTENT_ANY, MalformedUpdateError, MAX_UPDATE_STRUCTS, MAX_WORLD_UPDATE_BYTES, readCount, readUint, sameValue,
  UpdateTooLargeError, WrongClientError, checkInBounds, checkObjectId, checkObjectValue, clientIdForDid, ConflictingUpdateError, createWorldDoc, decodeWorldUpdate,
  DEFAULT_MAX_PENDING, DuplicateUpdateError, EditNotAllowedError, InvalidReferenceError, MAX_OBJECTS_PER_AUTHOR,
  MAX_STATE_VECTOR_BYTES, MAX_WORLD_OBJECTS, MissingDependencyError, ObjectLimitError, OBJECTS_KEY, UnknownObjectError,
  type AppliedUpdate, type EditContext, type OfferResult, type UpdateRange, type WorldInit, type WorldObject,
  type WorldObjectValue, type WorldUpdate
} from './world-update.ts'

export * from './world-update.ts'

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
