/**
 * The persistent world of a space (src/space/world.ts): the pure rules over Yjs updates. Edit
 * rights (owner, editor, parcel owner, stranger), authorship (clientID per did, exact clocks),
 * causal dependencies held and retried by offer(), every named limit gone past, crafted and
 * hostile bytes (the known Yjs/lib0 loop and memory bombs among them), and a fast-check
 * convergence property: replicas that receive the same updates in any order, with partitions
 * and duplicates, end with the same objects, state vectors and verdicts.
 * Keys come from fixed seeds and fast-check runs with seed 42, so a failure replays.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import * as encoding from 'lib0/encoding'
import * as Y from 'yjs'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed } from '../../src/identity/ed25519.ts'
import {
  applyWorldUpdate, checkObjectValue, clientIdForDid, ConflictingUpdateError, createWorldDoc, decodeStateVector,
  decodeWorldUpdate, DuplicateUpdateError, EditNotAllowedError, InvalidObjectError, InvalidReferenceError,
  MalformedUpdateError, MAX_ALTITUDE, MAX_MODEL_LENGTH, MAX_OBJECT_ID_LENGTH, MAX_OBJECT_PROPS, MAX_OBJECT_VALUE_BYTES,
  MAX_OBJECTS_PER_AUTHOR, MAX_PROP_KEY_LENGTH, MAX_PROP_STRING_BYTES, MAX_SCALE, MAX_UPDATE_STRUCTS, MAX_WORLD_OBJECTS,
  MAX_WORLD_UPDATE_BYTES, MIN_SCALE, MissingDependencyError, moveObject, ObjectLimitError, OBJECTS_KEY, placeObject,
  removeObject, setObjects, UnknownObjectError, UnsupportedStructError, UpdateTooLargeError, World, WrongClientError,
  type EditContext, type WorldObjectValue
} from '../../src/space/world.ts'

// ---------------------------------------------------------------- helpers

const didOf = (n: number): string => didFromPublicKey(ed25519KeyFromSeed(new Uint8Array(32).fill(n)).publicKey)
const OWNER = didOf(1)
const EDITOR = didOf(2)
const LANDLORD = didOf(3) // owns the parcel x, z in [0, 40)
const STRANGER = didOf(4)
const LANDLORD2 = didOf(5) // owns the parcel x, z in [60, 100]
const MODEL = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

const ctx: EditContext = {
  owner: OWNER,
  editors: new Set([EDITOR]),
  bounds: { minX: 0, maxX: 100, minZ: 0, maxZ: 100 },
  parcelOwnerAt (x, z) {
    if (x >= 0 && x < 40 && z >= 0 && z < 40) return LANDLORD
    if (x >= 60 && x <= 100 && z >= 60 && z <= 100) return LANDLORD2
    return undefined
  }
}

function obj (x: number, z: number, props: Record<string, string | number | boolean> = {}): WorldObjectValue {
  return { model: MODEL, position: [x, 1, z], rotation: [0, 0, 0, 1], scale: [1, 1, 1], props }
}

/** Asserts fn throws an error of the named class. */
function throwsNamed (fn: () => unknown, name: string): Error {
  let caught: unknown
  try { fn() } catch (err) { caught = err }
  assert.ok(caught instanceof Error, `expected ${name}, nothing was thrown`)
  assert.equal(caught.name, name, `expected ${name}, got ${caught.name}: ${caught.message}`)
  return caught
}

const WORLD_ERRORS = new Set([
  'MalformedUpdateError', 'UpdateTooLargeError', 'WrongClientError', 'UnsupportedStructError', 'InvalidObjectError',
  'InvalidReferenceError', 'MissingDependencyError', 'DuplicateUpdateError', 'ConflictingUpdateError',
  'EditNotAllowedError', 'ObjectLimitError'
])

/** A Yjs doc holding what `world` holds, writing as `author`; `take()` gives its last update. */
function yjsAuthor (world: World, author: string): { doc: Y.Doc, map: Y.Map<unknown>, take: () => Uint8Array } {
  const doc = createWorldDoc()
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(world.doc))
  doc.clientID = clientIdForDid(author)
  let last: Uint8Array | undefined
  doc.on('update', (u: Uint8Array) => { last = u })
  return { doc, map: doc.getMap(OBJECTS_KEY), take: () => { assert.ok(last != null); const u = last; last = undefined; return u } }
}

/** Hand-written V1 update bytes: one client, the given structs, then a delete set. */
function craft (client: number, clock: number, structs: Array<(e: encoding.Encoder) => void>, deletes: Array<[number, number, number]> = [], clients = 1): Uint8Array {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, clients)
  encoding.writeVarUint(e, structs.length)
  encoding.writeVarUint(e, client)
  encoding.writeVarUint(e, clock)
  for (const s of structs) s(e)
  encoding.writeVarUint(e, deletes.length)
  for (const [c, k, len] of deletes) {
    encoding.writeVarUint(e, c)
    encoding.writeVarUint(e, 1)
    encoding.writeVarUint(e, k)
    encoding.writeVarUint(e, len)
  }
  return encoding.toUint8Array(e)
}

/** A map-set struct with no origin, value written by lib0 as-is (no checks). */
const setNew = (key: string, value: unknown, root = OBJECTS_KEY) => (e: encoding.Encoder) => {
  encoding.writeUint8(e, 8 | 32)
  encoding.writeVarUint(e, 1)
  encoding.writeVarString(e, root)
  encoding.writeVarString(e, key)
  encoding.writeVarUint(e, 1)
  encoding.writeAny(e, value as never)
}

/** A map-set struct overwriting origin (client, clock). */
const setOver = (client: number, clock: number, value: unknown) => (e: encoding.Encoder) => {
  encoding.writeUint8(e, 8 | 32 | 128)
  encoding.writeVarUint(e, client)
  encoding.writeVarUint(e, clock)
  encoding.writeVarUint(e, 1)
  encoding.writeAny(e, value as never)
}

const svEntries = (w: World): Array<[number, number]> => [...decodeStateVector(w.stateVector())].sort((a, b) => a[0] - b[0])
const C = (did: string): number => clientIdForDid(did)

// ---------------------------------------------------------------- rules

describe('world: edit rights', () => {
  it('the owner places, moves and removes; the bytes are those Yjs writes', () => {
    const w = new World()
    const y = yjsAuthor(w, OWNER)
    const u1 = placeObject(w, OWNER, 'chair', obj(10, 10, { color: 'red' }))
    y.map.set('chair', obj(10, 10, { color: 'red' }))
    assert.deepEqual(u1, y.take())
    assert.deepEqual(w.apply(OWNER, u1, ctx), { client: C(OWNER), clockStart: 0, clockEnd: 1, objects: ['chair'] })
    assert.deepEqual(w.get('chair'), obj(10, 10, { color: 'red' }))

    const u2 = moveObject(w, OWNER, 'chair', { position: [20, 2, 30], rotation: [0, 1, 0, 0] })
    y.map.set('chair', { ...obj(20, 30, { color: 'red' }), position: [20, 2, 30], rotation: [0, 1, 0, 0] })
    assert.deepEqual(u2, y.take())
    assert.deepEqual(w.apply(OWNER, u2, ctx), { client: C(OWNER), clockStart: 1, clockEnd: 2, objects: ['chair'] })
    assert.deepEqual(w.get('chair')?.position, [20, 2, 30])

    const u3 = removeObject(w, OWNER, 'chair')
    y.map.set('chair', null)
    assert.deepEqual(u3, y.take())
    w.apply(OWNER, u3, ctx)
    assert.equal(w.objects().size, 0)
    assert.deepEqual(w.doc.getMap(OBJECTS_KEY).toJSON(), { chair: null })
    // placing again after removal overwrites the tombstone
    w.apply(OWNER, placeObject(w, OWNER, 'chair', obj(1, 1)), ctx)
    assert.deepEqual([...w.objects().keys()], ['chair'])
  })

  it('accepts updates Yjs itself writes (several objects in one transaction)', () => {
    const w = new World()
    const y = yjsAuthor(w, EDITOR)
    y.doc.transact(() => { for (let i = 0; i < 5; i++) y.map.set(`o${i}`, obj(50 + i, 50)) })
    const applied = w.apply(EDITOR, y.take(), ctx)
    assert.deepEqual(applied, { client: C(EDITOR), clockStart: 0, clockEnd: 5, objects: ['o0', 'o1', 'o2', 'o3', 'o4'] })
    y.doc.transact(() => { y.map.set('o1', null); y.map.set('o2', obj(1, 2)) })
    w.apply(EDITOR, y.take(), ctx)
    assert.deepEqual([...w.objects().keys()].sort(), ['o0', 'o2', 'o3', 'o4'])
  })

  it('an editor may change the owner\'s objects; a stranger may not', () => {
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'lamp', obj(50, 50)), ctx)
    w.apply(EDITOR, moveObject(w, EDITOR, 'lamp', { position: [51, 0, 51] }), ctx)
    assert.deepEqual(w.get('lamp')?.position, [51, 0, 51])
    const before = w.stateVector()
    for (const u of [moveObject(w, STRANGER, 'lamp', { position: [1, 0, 1] }), removeObject(w, STRANGER, 'lamp'), placeObject(w, STRANGER, 'new', obj(50, 50))]) {
      const err = throwsNamed(() => w.apply(STRANGER, u, ctx), 'EditNotAllowedError') as EditNotAllowedError
      assert.ok(err.objectId === 'lamp' || err.objectId === 'new')
    }
    assert.deepEqual(w.stateVector(), before)
    assert.deepEqual(w.get('lamp')?.position, [51, 0, 51])
  })

  it('a parcel owner edits inside its parcel only', () => {
    const w = new World()
    w.apply(LANDLORD, placeObject(w, LANDLORD, 'tree', obj(10, 10)), ctx)
    w.apply(LANDLORD, moveObject(w, LANDLORD, 'tree', { position: [30, 0, 39.5] }), ctx)
    // moving it out of the parcel
    const out = throwsNamed(() => w.apply(LANDLORD, moveObject(w, LANDLORD, 'tree', { position: [45, 0, 10] }), ctx), 'EditNotAllowedError') as EditNotAllowedError
    assert.equal(out.objectId, 'tree')
    // an object outside the parcel: neither move it in nor remove it
    w.apply(OWNER, placeObject(w, OWNER, 'fountain', obj(50, 50)), ctx)
    throwsNamed(() => w.apply(LANDLORD, moveObject(w, LANDLORD, 'fountain', { position: [5, 0, 5] }), ctx), 'EditNotAllowedError')
    throwsNamed(() => w.apply(LANDLORD, removeObject(w, LANDLORD, 'fountain'), ctx), 'EditNotAllowedError')
    // placing into another's parcel
    throwsNamed(() => w.apply(LANDLORD, placeObject(w, LANDLORD, 'shed', obj(70, 70)), ctx), 'EditNotAllowedError')
    // the owner's object inside the parcel: the parcel owner may move it within and remove it
    w.apply(OWNER, placeObject(w, OWNER, 'bench', obj(5, 5)), ctx)
    w.apply(LANDLORD, moveObject(w, LANDLORD, 'bench', { position: [6, 0, 6] }), ctx)
    w.apply(LANDLORD, removeObject(w, LANDLORD, 'tree'), ctx)
    assert.deepEqual([...w.objects().keys()].sort(), ['bench', 'fountain'])
  })

  it('judges by the value the update overwrites (its origin), not by what the receiver holds now', () => {
    // The landlord moves its tree inside its parcel while, concurrently, the owner moves it out.
    const a = new World()
    a.apply(LANDLORD, placeObject(a, LANDLORD, 'tree', obj(10, 10)), ctx)
    const landlordMove = moveObject(a, LANDLORD, 'tree', { position: [20, 0, 20] })
    const ownerMove = moveObject(a, OWNER, 'tree', { position: [80, 0, 50] })
    const b = new World()
    b.apply(LANDLORD, placeObject(b, LANDLORD, 'tree', obj(10, 10)), ctx)
    a.apply(LANDLORD, landlordMove, ctx)
    a.apply(OWNER, ownerMove, ctx)
    b.apply(OWNER, ownerMove, ctx)
    b.apply(LANDLORD, landlordMove, ctx) // tree is outside the parcel in b now, but the move overwrote (10, 10)
    assert.deepEqual(a.objects(), b.objects())
    assert.deepEqual(svEntries(a), svEntries(b))
  })

  it('check() judges without applying', () => {
    const w = new World()
    const u = placeObject(w, OWNER, 'a', obj(1, 1))
    assert.deepEqual(w.check(OWNER, u, ctx).objects, ['a'])
    assert.equal(w.objects().size, 0)
    throwsNamed(() => w.check(STRANGER, placeObject(w, STRANGER, 'a', obj(1, 1)), ctx), 'EditNotAllowedError')
  })

  it('objects() hands out copies', () => {
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'a', obj(1, 1, { k: 1 })), ctx)
    const o = w.objects().get('a')!
    o.position[0] = 99
    o.props.k = 2
    assert.deepEqual(w.get('a'), obj(1, 1, { k: 1 }))
  })
})

describe('world: authorship and causality', () => {
  it('rejects an update written with someone else\'s clientID, or with several clients', () => {
    const w = new World()
    const u = placeObject(w, OWNER, 'a', obj(1, 1))
    throwsNamed(() => w.apply(EDITOR, u, ctx), 'WrongClientError')
    const two = Y.mergeUpdates([u, placeObject(w, EDITOR, 'b', obj(2, 2))])
    throwsNamed(() => w.apply(OWNER, two, ctx), 'WrongClientError')
    assert.equal(w.objects().size, 0)
  })

  it('a clock gap is a MissingDependencyError; offer holds it and applies it once the gap fills', () => {
    const src = new World()
    const u1 = placeObject(src, OWNER, 'a', obj(1, 1))
    src.apply(OWNER, u1, ctx)
    const u2 = moveObject(src, OWNER, 'a', { position: [2, 0, 2] })
    src.apply(OWNER, u2, ctx)
    const u3 = placeObject(src, OWNER, 'b', obj(3, 3))
    src.apply(OWNER, u3, ctx)

    const w = new World()
    const err = throwsNamed(() => w.apply(OWNER, u3, ctx), 'MissingDependencyError') as MissingDependencyError
    assert.equal(err.client, C(OWNER))
    assert.equal(err.clock, 1) // it needs clocks 0 and 1 of the owner
    assert.deepEqual(w.offer('u3', OWNER, u3, ctx), { accepted: [], rejected: [], ignored: [], held: ['u3'], dropped: [] })
    assert.deepEqual(w.offer('u2', OWNER, u2, ctx).held, ['u2'])
    assert.deepEqual(w.pendingIds(), ['u3', 'u2'])
    const r = w.offer('u1', OWNER, u1, ctx)
    assert.deepEqual(r.accepted.map(a => [a.id, a.applied.clockStart]), [['u1', 0], ['u2', 1], ['u3', 2]])
    assert.deepEqual(w.pendingIds(), [])
    assert.deepEqual(w.objects(), src.objects())
    // the same update again is ignored, not rejected
    const again = w.offer('u1', OWNER, u1, ctx)
    assert.equal(again.ignored[0]?.error.name, 'DuplicateUpdateError')
    assert.equal(again.rejected.length, 0)
    throwsNamed(() => w.apply(OWNER, u2, ctx), 'DuplicateUpdateError')
  })

  it('an unknown origin (the overwritten item of another author) is held until that item arrives', () => {
    const src = new World()
    const ue = placeObject(src, EDITOR, 'a', obj(1, 1))
    src.apply(EDITOR, ue, ctx)
    const uo = removeObject(src, OWNER, 'a') // overwrites and deletes the editor's item
    assert.equal(decodeWorldUpdate(uo).deletes.length, 1)
    const w = new World()
    const err = throwsNamed(() => w.apply(OWNER, uo, ctx), 'MissingDependencyError') as MissingDependencyError
    assert.deepEqual([err.client, err.clock], [C(EDITOR), 0])
    assert.deepEqual(w.offer('uo', OWNER, uo, ctx).held, ['uo'])
    assert.deepEqual(w.offer('ue', EDITOR, ue, ctx).accepted.map(a => a.id), ['ue', 'uo'])
    assert.equal(w.objects().size, 0)
    assert.equal(w.doc.store.pendingStructs, null)
    assert.equal(w.doc.store.pendingDs, null)
  })

  it('a held update that turns out bad is rejected when retried', () => {
    const src = new World()
    const u0 = placeObject(src, LANDLORD, 't', obj(10, 10))
    src.apply(LANDLORD, u0, ctx)
    const bad = moveObject(src, LANDLORD, 't', { position: [90, 0, 10] }) // out of its parcel
    const w = new World()
    assert.deepEqual(w.offer('bad', LANDLORD, bad, ctx).held, ['bad'])
    const r = w.offer('u0', LANDLORD, u0, ctx)
    assert.deepEqual(r.accepted.map(a => a.id), ['u0'])
    assert.deepEqual(r.rejected.map(x => [x.id, x.error.name]), [['bad', 'EditNotAllowedError']])
    assert.deepEqual(w.pendingIds(), [])
  })

  it('deletes only what it overwrites, and only items already held', () => {
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'a', obj(1, 1)), ctx) // owner:0
    const owner = C(OWNER)
    // creates b and deletes a's item without overwriting it
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [setNew('b', obj(2, 2))], [[owner, 0, 1]]), ctx), 'InvalidReferenceError')
    // deletes an item of an unknown client that it does not overwrite
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [setNew('b', obj(2, 2))], [[12345, 7, 1]]), ctx), 'InvalidReferenceError')
    // overwrites an unknown item and deletes it: held until the item comes
    const other = C(EDITOR)
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [setOver(other, 3, obj(2, 2))], [[other, 3, 1]]), ctx), 'MissingDependencyError')
    // deletes its own item of this very update
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [setNew('b', obj(2, 2)), setOver(owner, 1, null)], [[owner, 1, 1]]), ctx), 'InvalidReferenceError')
    // a delete-only update (Y.Map.delete) has no struct of its author
    const y = yjsAuthor(w, OWNER)
    y.map.delete('a')
    throwsNamed(() => w.apply(OWNER, y.take(), ctx), 'MalformedUpdateError')
    // names its own future as origin
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [setOver(owner, 1, obj(2, 2))]), ctx), 'InvalidReferenceError')
    assert.deepEqual([...w.objects().keys()], ['a'])
    assert.equal(w.doc.store.pendingDs, null)
  })

  it('an origin earlier in the same update is fine', () => {
    const w = new World()
    const owner = C(OWNER)
    w.apply(OWNER, craft(owner, 0, [setNew('a', obj(1, 1)), setOver(owner, 0, obj(2, 2))]), ctx)
    assert.deepEqual(w.get('a')?.position, [2, 1, 2])
    // ... and is judged like any other: a landlord may not carry it out of its parcel
    throwsNamed(() => w.apply(LANDLORD, craft(C(LANDLORD), 0, [setNew('t', obj(1, 1)), setOver(C(LANDLORD), 0, obj(50, 50))]), ctx), 'EditNotAllowedError')
  })

  it('an author who rewrites held clocks is caught (ConflictingUpdateError)', () => {
    const w = new World()
    const u = placeObject(w, OWNER, 'a', obj(1, 1))
    const fork = placeObject(w, OWNER, 'a', obj(2, 2)) // same clock, other content
    const other = placeObject(w, OWNER, 'z', obj(1, 1)) // same clock, other key
    w.apply(OWNER, u, ctx)
    throwsNamed(() => w.apply(OWNER, fork, ctx), 'ConflictingUpdateError')
    throwsNamed(() => w.apply(OWNER, other, ctx), 'ConflictingUpdateError')
    // overlapping: clocks 0..2 when 0..1 is held
    const owner = C(OWNER)
    throwsNamed(() => w.apply(OWNER, craft(owner, 0, [setNew('a', obj(1, 1)), setNew('b', obj(1, 1))]), ctx), 'ConflictingUpdateError')
    throwsNamed(() => w.apply(OWNER, u, ctx), 'DuplicateUpdateError')
  })

  it('offer keeps at most maxPending, dropping the oldest', () => {
    const src = new World()
    const ups: Uint8Array[] = []
    for (let i = 0; i < 5; i++) { const u = placeObject(src, OWNER, `o${i}`, obj(i, i)); src.apply(OWNER, u, ctx); ups.push(u) }
    const w = new World({ maxPending: 2 })
    w.offer('4', OWNER, ups[4], ctx)
    w.offer('3', OWNER, ups[3], ctx)
    const r = w.offer('2', OWNER, ups[2], ctx)
    assert.deepEqual(r.dropped, ['4'])
    assert.deepEqual(w.pendingIds(), ['3', '2'])
    assert.deepEqual(w.offer('2', OWNER, ups[2], ctx).held, ['2']) // already held: nothing new
    w.offer('0', OWNER, ups[0], ctx)
    const last = w.offer('1', OWNER, ups[1], ctx)
    assert.deepEqual(last.accepted.map(a => a.id), ['1', '2', '3'])
    assert.deepEqual(w.offer('4', OWNER, ups[4], ctx).accepted.map(a => a.id), ['4'])
  })

  it('held updates are retried only once what they wait for arrives (no re-decoding on every acceptance)', () => {
    const w = new World()
    const props = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`p${i}`, 'x'.repeat(110)]))
    // 200 updates of ~60 KiB, each overwriting an item of a client nobody has heard of
    for (let i = 0; i < 200; i++) {
      const who = didOf(100 + i)
      const structs = Array.from({ length: 17 }, (_, k) => setOver(999, k, obj(50, 50, props)))
      const u = craft(C(who), 0, structs)
      assert.ok(u.length > 55_000 && u.length <= MAX_WORLD_UPDATE_BYTES, String(u.length))
      assert.deepEqual(w.offer(`h${i}`, who, u, ctx).held, [`h${i}`])
    }
    const t0 = performance.now()
    for (let i = 0; i < 100; i++) {
      assert.equal(w.offer(`o${i}`, OWNER, placeObject(w, OWNER, `o${i}`, obj(1, 1)), ctx).accepted.length, 1)
    }
    const took = performance.now() - t0
    assert.ok(took < 1000, `100 acceptances with 200 held took ${took} ms`)
    assert.equal(w.pendingIds().length, 200)
  })

  it('needed() picks the ranges a peer lacks', () => {
    const w = new World()
    const ranges: Array<{ client: number, clockStart: number, clockEnd: number, tag: string }> = []
    for (const [i, who] of [OWNER, OWNER, EDITOR].entries()) {
      const a = w.apply(who, placeObject(w, who, `o${i}`, obj(i, i)), ctx)
      ranges.push({ ...a, tag: `r${i}` })
    }
    assert.deepEqual(World.needed(w.stateVector(), ranges), [])
    assert.deepEqual(World.needed(new World().stateVector(), ranges).map(r => r.tag), ['r0', 'r1', 'r2'])
    const peer = new World()
    peer.apply(OWNER, placeObject(peer, OWNER, 'o0', obj(0, 0)), ctx)
    assert.deepEqual(World.needed(peer.stateVector(), ranges).map(r => r.tag), ['r1', 'r2'])
    throwsNamed(() => World.needed(new Uint8Array([5, 1]), ranges), 'MalformedUpdateError')
    throwsNamed(() => World.needed(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), ranges), 'MalformedUpdateError')
    throwsNamed(() => World.needed(new Uint8Array(70_000), ranges), 'MalformedUpdateError')
  })

  it('clientIdForDid is a stable 53-bit id that Yjs round-trips', () => {
    const id = clientIdForDid(OWNER)
    assert.equal(id, clientIdForDid(OWNER))
    assert.ok(Number.isSafeInteger(id) && id >= 0 && id < 2 ** 53)
    assert.notEqual(id, clientIdForDid(EDITOR))
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'a', obj(1, 1)), ctx)
    assert.deepEqual(svEntries(w), [[id, 1]])
    const copy = new Y.Doc()
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(w.doc))
    assert.equal(Y.getState(copy.store, id), 1)
    assert.equal(Y.encodeStateAsUpdateV2(w.doc).length > 0, true)
  })

  it('refuses a doc that garbage-collects deleted values, and authors that are not did:keys', () => {
    throwsNamed(() => applyWorldUpdate(new Y.Doc(), OWNER, placeObject(new World(), OWNER, 'a', obj(1, 1)), ctx), 'TypeError')
    throwsNamed(() => new World().apply('did:key:nope', new Uint8Array([0]), ctx), 'TypeError')
  })
})

describe('world: structure and values', () => {
  it('rejects other root types, nested types, other content, GC, Skip and right origins', () => {
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'a', obj(1, 1)), ctx)
    const y = yjsAuthor(w, OWNER)
    y.doc.getText('notes').insert(0, 'hi')
    throwsNamed(() => w.apply(OWNER, y.take(), ctx), 'UnsupportedStructError')
    const y2 = yjsAuthor(w, OWNER)
    y2.doc.getMap('other').set('k', obj(1, 1))
    throwsNamed(() => w.apply(OWNER, y2.take(), ctx), 'UnsupportedStructError')
    const y3 = yjsAuthor(w, OWNER)
    const nested = new Y.Map()
    y3.map.set('n', nested)
    throwsNamed(() => w.apply(OWNER, y3.take(), ctx), 'UnsupportedStructError')
    nested.set('x', 1)
    throwsNamed(() => w.apply(OWNER, y3.take(), ctx), 'UnsupportedStructError')
    const y4 = yjsAuthor(w, OWNER)
    y4.doc.getArray('list').push([1])
    throwsNamed(() => w.apply(OWNER, y4.take(), ctx), 'UnsupportedStructError')
    const owner = C(OWNER)
    const raw = (info: number, tail: number[]) => (e: encoding.Encoder) => { encoding.writeUint8(e, info); for (const b of tail) encoding.writeUint8(e, b) }
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [raw(0, [5])]), ctx), 'UnsupportedStructError') // GC
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [raw(10, [5])]), ctx), 'UnsupportedStructError') // Skip
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [raw(8 | 32 | 64, [1, 1, 1, 126])]), ctx), 'UnsupportedStructError') // right origin
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [raw(8, [1, 7, ...Buffer.from('objects'), 1, 126])]), ctx), 'UnsupportedStructError') // no key
    const twoValues = (e: encoding.Encoder): void => {
      encoding.writeUint8(e, 8 | 32); encoding.writeVarUint(e, 1); encoding.writeVarString(e, OBJECTS_KEY); encoding.writeVarString(e, 'b')
      encoding.writeVarUint(e, 2); encoding.writeAny(e, obj(1, 1) as never); encoding.writeAny(e, obj(1, 1) as never)
    }
    throwsNamed(() => w.apply(OWNER, craft(owner, 1, [twoValues]), ctx), 'UnsupportedStructError')
    // Yjs would have created those root types on decode; we never let it see the bytes
    assert.deepEqual([...w.doc.share.keys()], [OBJECTS_KEY])
    assert.deepEqual([...w.objects().keys()], ['a'])
  })

  it('rejects bad ids and values, by name', () => {
    const w = new World()
    const owner = C(OWNER)
    const bad = (key: string, value: unknown, name = 'InvalidObjectError') => throwsNamed(() => w.apply(OWNER, craft(owner, 0, [setNew(key, value)]), ctx), name)
    bad('', obj(1, 1))
    bad('x'.repeat(MAX_OBJECT_ID_LENGTH + 1), obj(1, 1))
    bad('a b', obj(1, 1))
    bad('é', obj(1, 1))
    bad('a', null) // removal of nothing
    bad('a', 'a string')
    bad('a', [1, 2, 3])
    bad('a', { ...obj(1, 1), extra: 1 })
    const { props: _p, ...noProps } = obj(1, 1)
    bad('a', noProps)
    bad('a', { ...obj(1, 1), model: 'not a cid' })
    bad('a', { ...obj(1, 1), model: 'zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA' }) // base58 CIDv1: not canonical
    bad('a', { ...obj(1, 1), model: 'b'.repeat(MAX_MODEL_LENGTH + 1) })
    bad('a', { ...obj(1, 1), position: [NaN, 0, 1] })
    bad('a', { ...obj(1, 1), position: [Infinity, 0, 1] })
    bad('a', { ...obj(1, 1), position: [1, 0] })
    bad('a', { ...obj(1, 1), position: [1, '0', 1] })
    bad('a', { ...obj(1, 1), position: [1, MAX_ALTITUDE + 1, 1] })
    bad('a', obj(101, 1)) // outside the bounds
    bad('a', obj(1, -0.5))
    bad('a', { ...obj(1, 1), rotation: [0, 0, 0, 2] })
    bad('a', { ...obj(1, 1), rotation: [0, 0, 1] })
    bad('a', { ...obj(1, 1), scale: [0, 1, 1] })
    bad('a', { ...obj(1, 1), scale: [MIN_SCALE / 2, 1, 1] })
    bad('a', { ...obj(1, 1), scale: [MAX_SCALE * 2, 1, 1] })
    bad('a', obj(1, 1, { 'bad key': 1 }))
    bad('a', obj(1, 1, { ['k'.repeat(MAX_PROP_KEY_LENGTH + 1)]: 1 }))
    bad('a', obj(1, 1, { s: 'x'.repeat(MAX_PROP_STRING_BYTES + 1) }))
    bad('a', { ...obj(1, 1), props: { n: { deep: 1 } } })
    bad('a', { ...obj(1, 1), props: { n: [1] } })
    bad('a', { ...obj(1, 1), props: { n: null } })
    bad('a', { ...obj(1, 1), props: { n: 10n } }) // bigint
    bad('a', { ...obj(1, 1), props: { n: new Uint8Array(3) } })
    bad('a', { ...obj(1, 1), props: { n: undefined } })
    bad('a', { ...obj(1, 1), props: { n: NaN } })
    assert.equal(w.objects().size, 0)
    assert.deepEqual(svEntries(w), [])
  })

  it('rejects map keys that would make the value Yjs stores differ from the one checked', () => {
    const w = new World()
    // props with key __proto__ (lib0 would set the object's prototype) and a repeated key
    const proto = (e: encoding.Encoder) => {
      encoding.writeUint8(e, 8 | 32); encoding.writeVarUint(e, 1); encoding.writeVarString(e, OBJECTS_KEY); encoding.writeVarString(e, 'a')
      encoding.writeVarUint(e, 1)
      encoding.writeUint8(e, 118); encoding.writeVarUint(e, 5)
      const { props: _p, ...rest } = obj(1, 1)
      for (const [k, v] of Object.entries(rest)) { encoding.writeVarString(e, k); encoding.writeAny(e, v as never) }
      encoding.writeVarString(e, 'props'); encoding.writeUint8(e, 118); encoding.writeVarUint(e, 1)
      encoding.writeVarString(e, '__proto__'); encoding.writeAny(e, { polluted: true } as never)
    }
    throwsNamed(() => w.apply(OWNER, craft(C(OWNER), 0, [proto]), ctx), 'InvalidObjectError')
    const repeated = (e: encoding.Encoder) => {
      encoding.writeUint8(e, 8 | 32); encoding.writeVarUint(e, 1); encoding.writeVarString(e, OBJECTS_KEY); encoding.writeVarString(e, 'a')
      encoding.writeVarUint(e, 1)
      encoding.writeUint8(e, 118); encoding.writeVarUint(e, 6)
      for (const [k, v] of Object.entries(obj(1, 1))) { encoding.writeVarString(e, k); encoding.writeAny(e, v as never) }
      encoding.writeVarString(e, 'position'); encoding.writeAny(e, [99, 0, 99] as never)
    }
    throwsNamed(() => w.apply(OWNER, craft(C(OWNER), 0, [repeated]), ctx), 'InvalidObjectError')
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
  })

  it('authoring helpers check ids and values before writing', () => {
    const w = new World()
    throwsNamed(() => placeObject(w, OWNER, 'bad id', obj(1, 1)), 'InvalidObjectError')
    throwsNamed(() => placeObject(w, OWNER, 'a', { ...obj(1, 1), position: [NaN, 0, 0] }), 'InvalidObjectError')
    throwsNamed(() => moveObject(w, OWNER, 'missing', { position: [1, 1, 1] }), 'UnknownObjectError')
    throwsNamed(() => removeObject(w, OWNER, 'missing'), 'UnknownObjectError')
    throwsNamed(() => setObjects(w, OWNER, [['a', obj(1, 1)], ['a', obj(2, 2)]]), 'TypeError')
    assert.deepEqual(checkObjectValue({ ...obj(1, 1), model: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG' }).model, 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG')
  })
})

describe('world: limits', () => {
  it('update bytes: MAX_WORLD_UPDATE_BYTES', () => {
    const w = new World()
    throwsNamed(() => w.apply(OWNER, new Uint8Array(MAX_WORLD_UPDATE_BYTES + 1), ctx), 'UpdateTooLargeError')
    // a real update just over the limit: 64 objects of ~1 KiB props each
    const big = Array.from({ length: 70 }, (_, i) => [`o${i}`, obj(1, 1, { s: 'x'.repeat(MAX_PROP_STRING_BYTES - 100) })] as const)
    throwsNamed(() => setObjects(w, OWNER, big), 'UpdateTooLargeError')
    const y = yjsAuthor(w, OWNER)
    y.doc.transact(() => { for (const [k, v] of big) y.map.set(k, v) })
    const u = y.take()
    assert.ok(u.length > MAX_WORLD_UPDATE_BYTES)
    throwsNamed(() => w.apply(OWNER, u, ctx), 'UpdateTooLargeError')
  })

  it('structs per update: MAX_UPDATE_STRUCTS', () => {
    const w = new World()
    const many = (n: number) => Array.from({ length: n }, (_, i) => [`o${i}`, obj(50, 50)] as const)
    w.apply(OWNER, setObjects(w, OWNER, many(MAX_UPDATE_STRUCTS)), ctx)
    throwsNamed(() => setObjects(w, OWNER, many(MAX_UPDATE_STRUCTS + 1)), 'UpdateTooLargeError')
    const y = yjsAuthor(new World(), EDITOR)
    y.doc.transact(() => { for (const [k, v] of many(MAX_UPDATE_STRUCTS + 1)) y.map.set(k, v) })
    throwsNamed(() => new World().apply(EDITOR, y.take(), ctx), 'UpdateTooLargeError')
  })

  it('props and value size: MAX_OBJECT_PROPS, MAX_OBJECT_VALUE_BYTES', () => {
    const w = new World()
    const props = (n: number, len = 1) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, 'x'.repeat(len)]))
    w.apply(OWNER, placeObject(w, OWNER, 'ok', obj(1, 1, props(MAX_OBJECT_PROPS))), ctx)
    throwsNamed(() => placeObject(w, OWNER, 'a', obj(1, 1, props(MAX_OBJECT_PROPS + 1))), 'InvalidObjectError')
    throwsNamed(() => w.apply(OWNER, craft(C(OWNER), 1, [setNew('a', obj(1, 1, props(MAX_OBJECT_PROPS + 1)))]), ctx), 'UpdateTooLargeError')
    const fat = obj(1, 1, props(8, 600)) // each prop fine, the value over MAX_OBJECT_VALUE_BYTES
    throwsNamed(() => placeObject(w, OWNER, 'a', fat), 'InvalidObjectError')
    throwsNamed(() => w.apply(OWNER, craft(C(OWNER), 1, [setNew('a', fat)]), ctx), 'InvalidObjectError')
    assert.ok(JSON.stringify(fat).length > MAX_OBJECT_VALUE_BYTES)
  })

  it('objects per author: MAX_OBJECTS_PER_AUTHOR, counted in the author\'s own clock order', () => {
    const w = new World()
    const batch = (from: number) => Array.from({ length: MAX_UPDATE_STRUCTS }, (_, i) => [`e${from + i}`, obj(50, 50)] as const)
    for (let n = 0; n < MAX_OBJECTS_PER_AUTHOR; n += MAX_UPDATE_STRUCTS) w.apply(EDITOR, setObjects(w, EDITOR, batch(n)), ctx)
    assert.equal(w.objects().size, MAX_OBJECTS_PER_AUTHOR)
    throwsNamed(() => w.apply(EDITOR, placeObject(w, EDITOR, 'one-more', obj(50, 50)), ctx), 'ObjectLimitError')
    // rewriting or removing its objects is still fine, and so is another author's new object
    w.apply(EDITOR, moveObject(w, EDITOR, 'e0', { position: [60, 0, 60] }), ctx)
    w.apply(EDITOR, removeObject(w, EDITOR, 'e1'), ctx)
    w.apply(OWNER, placeObject(w, OWNER, 'one-more', obj(50, 50)), ctx)
    // removing does not give the editor room again: creations are counted, not live objects
    throwsNamed(() => w.apply(EDITOR, placeObject(w, EDITOR, 'two-more', obj(50, 50)), ctx), 'ObjectLimitError')
  })

  it('live objects: MAX_WORLD_OBJECTS, enforced when authoring', () => {
    const w = new World()
    const editors = [OWNER, EDITOR, didOf(6), didOf(7)]
    const wide: EditContext = { ...ctx, editors: new Set(editors) }
    let n = 0
    for (const who of editors) {
      for (let i = 0; i < MAX_OBJECTS_PER_AUTHOR; i += MAX_UPDATE_STRUCTS) {
        const batch = Array.from({ length: MAX_UPDATE_STRUCTS }, () => [`x${n++}`, obj(50, 50)] as const)
        w.apply(who, setObjects(w, who, batch), wide)
      }
    }
    assert.equal(w.objects().size, MAX_WORLD_OBJECTS)
    throwsNamed(() => placeObject(w, didOf(8), 'over', obj(50, 50)), 'ObjectLimitError')
    // replacing an existing object is not adding one
    w.apply(OWNER, placeObject(w, OWNER, 'x0', obj(51, 51)), wide)
  })
})

// ---------------------------------------------------------------- hostile bytes

describe('world: hostile and crafted updates', () => {
  /** Asserts a fresh world rejects the bytes with a named error within `ms`, and holds nothing after. */
  function rejectsFast (bytes: Uint8Array, names: string[] = ['MalformedUpdateError'], ms = 100): void {
    const w = new World()
    const t0 = performance.now()
    let caught: unknown
    try { w.apply(OWNER, bytes, ctx) } catch (err) { caught = err }
    const took = performance.now() - t0
    assert.ok(caught instanceof Error, `accepted ${Buffer.from(bytes).toString('hex')}`)
    assert.ok(names.includes(caught.name), `got ${caught.name}: ${caught.message}`)
    assert.ok(took < ms, `took ${took} ms`)
    assert.equal(w.doc.store.pendingStructs, null)
    assert.equal(w.doc.store.pendingDs, null)
    assert.deepEqual(svEntries(w), [])
  }

  it('empty and garbage updates (yjs#479, #498)', () => {
    rejectsFast(new Uint8Array(0))
    rejectsFast(new Uint8Array(Buffer.from('garbagedoc', 'base64')))
    rejectsFast(new Uint8Array([0, 0])) // Yjs's own empty update: no structs
    rejectsFast(new Uint8Array([0xff]))
    rejectsFast(new Uint8Array([200, 200, 200, 200])) // lib0#42: a varint that never ends
    rejectsFast(new Uint8Array(11).fill(0xff)) // a varint past 2^53
  })

  it('the run-length and struct-count bombs of yjs#687 (tests/limits.tests.js), which hang Yjs 13.6 itself', () => {
    // V2 updates (and V1 for mergeUpdates): we read V1 only, with every count checked against the bytes left
    rejectsFast(new Uint8Array([0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 2, 0, 0, 22, 2, 0, 0, 1, 253, 255, 255, 255, 255, 127, 0, 0]))
    rejectsFast(new Uint8Array([228, 156, 16, 0, 5, 255, 255, 5, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 237, 0, 0, 0, 1, 1, 0, 254, 184, 194, 233, 173, 135, 217, 18, 0, 0, 1, 1, 255, 237, 246]), ['MalformedUpdateError'])
    rejectsFast(new Uint8Array([228, 149, 0, 0, 1, 24, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 237, 1, 190, 130, 227, 195, 28, 1, 2, 228, 149, 0, 0, 1, 24, 0, 0, 1, 24, 0, 0, 1, 0, 1, 237, 0]), ['MalformedUpdateError'])
    rejectsFast(new Uint8Array([143, 1, 128, 0, 0, 0, 1, 170, 1, 0, 1, 2, 0, 0, 22, 2, 0, 229, 196, 67, 20, 231, 166, 139, 147, 174, 181, 253, 93, 232, 38, 154, 138, 89, 0, 49, 213, 15, 18, 1, 48, 0, 0, 0]), ['MalformedUpdateError'])
    rejectsFast(new Uint8Array([0, 1, 35, 0, 0, 0, 1, 2, 129, 0, 0, 16, 0, 199, 220, 0, 196, 122, 128, 0, 65, 171, 234, 214, 0, 1, 0, 0, 1, 0, 0, 132, 0, 0, 16, 255, 199, 220, 255, 0, 0, 0]))
  })

  it('counts that claim millions, lengths that claim terabytes', () => {
    const owner = C(OWNER)
    const e = (f: (e: encoding.Encoder) => void): Uint8Array => { const x = encoding.createEncoder(); f(x); return encoding.toUint8Array(x) }
    // 5 million structs, then nothing
    rejectsFast(e(x => { encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 5_000_000); encoding.writeVarUint(x, owner); encoding.writeVarUint(x, 0) }), ['UpdateTooLargeError'])
    // a million clients
    rejectsFast(e(x => { encoding.writeVarUint(x, 1_000_000); encoding.writeVarUint(x, 1) }), ['MalformedUpdateError'])
    // an object id of 2^40 bytes
    rejectsFast(e(x => {
      encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 1); encoding.writeVarUint(x, owner); encoding.writeVarUint(x, 0)
      encoding.writeUint8(x, 40); encoding.writeVarUint(x, 1); encoding.writeVarString(x, OBJECTS_KEY); encoding.writeVarUint(x, 2 ** 40); encoding.writeUint8(x, 97)
    }))
    // a value array of 2^31 elements, and a map of a million entries
    for (const tail of [[117, 0x80, 0x80, 0x80, 0x80, 0x08], [118, 0xc0, 0x84, 0x3d]]) {
      rejectsFast(e(x => {
        encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 1); encoding.writeVarUint(x, owner); encoding.writeVarUint(x, 0)
        encoding.writeUint8(x, 40); encoding.writeVarUint(x, 1); encoding.writeVarString(x, OBJECTS_KEY); encoding.writeVarString(x, 'a')
        encoding.writeVarUint(x, 1); for (const b of tail) encoding.writeUint8(x, b)
        for (let i = 0; i < 8; i++) encoding.writeUint8(x, 0)
      }), ['MalformedUpdateError', 'UpdateTooLargeError', 'InvalidObjectError'])
    }
    // a ContentAny of 2^50 values
    rejectsFast(e(x => {
      encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 1); encoding.writeVarUint(x, owner); encoding.writeVarUint(x, 0)
      encoding.writeUint8(x, 40); encoding.writeVarUint(x, 1); encoding.writeVarString(x, OBJECTS_KEY); encoding.writeVarString(x, 'a')
      encoding.writeVarUint(x, 2 ** 50); encoding.writeUint8(x, 126)
    }), ['UnsupportedStructError', 'MalformedUpdateError'])
    // a GC struct of length 2^52 (Yjs 13.6 takes it and moves the client's clock there for good)
    rejectsFast(craft(owner, 0, [(x) => { encoding.writeUint8(x, 0); encoding.writeVarUint(x, 2 ** 52) }]), ['UnsupportedStructError'])
    // delete sets claiming many clients or ranges, or huge ranges
    const one = [setNew('a', obj(1, 1))]
    const withDs = (f: (x: encoding.Encoder) => void): Uint8Array => {
      const u = craft(owner, 0, one)
      return new Uint8Array([...u.subarray(0, u.length - 1), ...e(f)])
    }
    rejectsFast(withDs(x => encoding.writeVarUint(x, 1_000_000)), ['UpdateTooLargeError'])
    rejectsFast(withDs(x => { encoding.writeVarUint(x, 1); encoding.writeVarUint(x, owner); encoding.writeVarUint(x, 1_000_000) }), ['UpdateTooLargeError'])
    rejectsFast(withDs(x => { encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 7); encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 0); encoding.writeVarUint(x, 2 ** 52) }), ['InvalidReferenceError'])
    // a clock near 2^53
    rejectsFast(craft(owner, 2 ** 53 - 1, one))
    // trailing bytes after a valid update
    const ok = placeObject(new World(), OWNER, 'a', obj(1, 1))
    rejectsFast(new Uint8Array([...ok, 0]))
    // invalid UTF-8 in a key
    rejectsFast(e(x => {
      encoding.writeVarUint(x, 1); encoding.writeVarUint(x, 1); encoding.writeVarUint(x, owner); encoding.writeVarUint(x, 0)
      encoding.writeUint8(x, 40); encoding.writeVarUint(x, 1); encoding.writeVarString(x, OBJECTS_KEY); encoding.writeVarUint(x, 2); encoding.writeUint8(x, 0xc3); encoding.writeUint8(x, 0x28)
      encoding.writeVarUint(x, 1); encoding.writeAny(x, obj(1, 1) as never); encoding.writeVarUint(x, 0)
    }))
  })

  it('never reads past the end of a view into a larger buffer', () => {
    const ok = placeObject(new World(), OWNER, 'abcdef', obj(1, 1))
    // cut inside the key: the key's length points past the view, into bytes that are there in the buffer
    const cut = ok.indexOf(0x61) // 'a'
    const view = new Uint8Array(ok.buffer, ok.byteOffset, cut + 2)
    rejectsFast(view)
    // the same update as a view into a larger buffer is accepted as itself
    const pool = new Uint8Array(ok.length + 20).fill(7)
    pool.set(ok, 10)
    const w = new World()
    w.apply(OWNER, pool.subarray(10, 10 + ok.length), ctx)
    assert.deepEqual([...w.objects().keys()], ['abcdef'])
    // pooled Buffers work too, and offer keeps its own copy of what it holds
    const src = new World()
    const u1 = placeObject(src, OWNER, 'a', obj(1, 1))
    src.apply(OWNER, u1, ctx)
    const held = Buffer.from(placeObject(src, OWNER, 'b', obj(2, 2)))
    assert.notEqual(held.byteLength, held.buffer.byteLength)
    const w2 = new World()
    assert.deepEqual(w2.offer('2', OWNER, held, ctx).held, ['2'])
    held.fill(0)
    assert.deepEqual(w2.offer('1', OWNER, Buffer.from(u1), ctx).accepted.map(a => a.id), ['1', '2'])
    assert.deepEqual([...w2.objects().keys()].sort(), ['a', 'b'])
  })

  it('every truncation of a valid update is malformed', () => {
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'a', obj(1, 1)), ctx)
    const u = setObjects(w, OWNER, [['a', obj(2, 2, { k: 'v', n: 1.25, b: true })], ['b', obj(3, 3)]])
    for (let n = 0; n < u.length; n++) throwsNamed(() => w.check(OWNER, u.subarray(0, n), ctx), 'MalformedUpdateError')
    w.apply(OWNER, u, ctx)
  })

  it('random bytes always get a named error, quickly, and leave the doc as it was (fast-check)', () => {
    const w = new World()
    w.apply(OWNER, placeObject(w, OWNER, 'a', obj(1, 1)), ctx)
    const sv = svEntries(w)
    const owner = C(OWNER)
    const prefix = craft(owner, 1, []).subarray(0, 4) // plausible headers, so the fuzz gets past the first bytes
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (tail, withHeader) => {
      const bytes = withHeader ? new Uint8Array([...prefix, ...tail]) : tail
      const t0 = performance.now()
      try {
        w.check(OWNER, bytes, ctx)
      } catch (err) {
        assert.ok(err instanceof Error && WORLD_ERRORS.has(err.name), `unnamed ${(err as Error).name}: ${(err as Error).message}`)
      }
      assert.ok(performance.now() - t0 < 100)
      assert.deepEqual(svEntries(w), sv)
      assert.equal(w.doc.store.pendingStructs, null)
    }), { seed: 42, numRuns: 2000 })
  })

  it('mutated valid updates are either valid or refused by name, and never leave pending state (fast-check)', () => {
    const base = new World()
    base.apply(OWNER, placeObject(base, OWNER, 'a', obj(1, 1)), ctx)
    base.apply(EDITOR, placeObject(base, EDITOR, 'b', obj(5, 5)), ctx)
    const u = setObjects(base, OWNER, [['a', obj(2, 2, { k: 'v' })], ['b', null], ['c', obj(3, 3, { n: 1.5 })]])
    const state = Y.encodeStateAsUpdate(base.doc)
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(u.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (flips) => {
      const w = new World()
      Y.applyUpdate(w.doc, state) // our own trusted state
      const bytes = u.slice()
      for (const [i, b] of flips) bytes[i] = b
      try {
        const applied = w.apply(OWNER, bytes, ctx)
        assert.equal(applied.client, C(OWNER))
        for (const v of w.objects().values()) checkObjectValue(v)
      } catch (err) {
        assert.ok(err instanceof Error && WORLD_ERRORS.has(err.name), `unnamed ${(err as Error).name}: ${(err as Error).message}`)
      }
      assert.equal(w.doc.store.pendingStructs, null)
      assert.equal(w.doc.store.pendingDs, null)
      assert.deepEqual([...w.doc.share.keys()], [OBJECTS_KEY])
    }), { seed: 42, numRuns: 1500 })
  })
})

// ---------------------------------------------------------------- convergence

describe('world: convergence (fast-check)', () => {
  const AUTHORS = [OWNER, EDITOR, LANDLORD, STRANGER, LANDLORD2]
  const IDS = ['a', 'b', 'c', 'd', 'e']

  type Cmd =
    | { t: 'op', author: number, kind: 'place' | 'move' | 'remove', obj: number, x: number, z: number }
    | { t: 'deliver', replica: number, pick: number }
    | { t: 'partition', cut: boolean[] }
    | { t: 'heal' }

  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ t: fc.constant('op' as const), author: fc.nat(AUTHORS.length - 1), kind: fc.constantFrom('place' as const, 'move' as const, 'remove' as const), obj: fc.nat(IDS.length - 1), x: fc.integer({ min: 0, max: 100 }), z: fc.integer({ min: 0, max: 100 }) }) },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('deliver' as const), replica: fc.nat(4), pick: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('partition' as const), cut: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('heal' as const) }) }
  )

  it('replicas given the same updates in any order, with partitions and duplicates, agree on objects, state vectors and verdicts', () => {
    fc.assert(fc.property(fc.integer({ min: 3, max: 5 }), fc.array(cmd, { minLength: 10, maxLength: 80 }), fc.array(fc.nat(), { minLength: 1, maxLength: 50 }), (R, cmds, shuffle) => {
      const replicas = Array.from({ length: R }, () => new World({ maxPending: 10_000 }))
      const verdicts = replicas.map(() => new Map<string, Set<string>>())
      const log: Array<{ id: string, author: string, update: Uint8Array }> = []
      let cut = new Array<boolean>(R).fill(false)
      const deliver = (r: number, m: { id: string, author: string, update: Uint8Array }): void => {
        const res = replicas[r].offer(m.id, m.author, m.update, ctx)
        const note = (id: string, v: string): void => { const s = verdicts[r].get(id) ?? new Set(); s.add(v); verdicts[r].set(id, s) }
        for (const a of res.accepted) note(a.id, 'accepted')
        for (const x of res.rejected) {
          assert.ok(WORLD_ERRORS.has(x.error.name) && x.error.name !== 'MissingDependencyError')
          note(x.id, 'rejected')
        }
        for (const x of res.ignored) note(x.id, 'ignored')
        assert.deepEqual(res.dropped, [])
      }
      for (const c of cmds) {
        if (c.t === 'op') {
          const author = AUTHORS[c.author]
          const home = c.author % R
          const w = replicas[home]
          const id = IDS[c.obj]
          const current = w.get(id)
          let update: Uint8Array
          if (c.kind === 'remove' && current != null) update = removeObject(w, author, id)
          else if (c.kind === 'move' && current != null) update = moveObject(w, author, id, { position: [c.x, 0, c.z] })
          else update = placeObject(w, author, id, obj(c.x, c.z, { by: c.author }))
          const m = { id: `u${log.length}`, author, update }
          log.push(m)
          deliver(home, m)
        } else if (c.t === 'deliver') {
          const r = c.replica % R
          if (log.length > 0 && !cut[r]) deliver(r, log[c.pick % log.length])
        } else if (c.t === 'partition') {
          cut = c.cut.slice(0, R)
        } else {
          cut = new Array<boolean>(R).fill(false)
        }
      }
      // heal: every replica gets every update, in its own shuffled order, some twice
      for (let r = 0; r < R; r++) {
        const order = log.map((m, i) => ({ m, k: shuffle[(i + r * 7) % shuffle.length] ^ (i * 2654435761) }))
        order.sort((a, b) => a.k - b.k)
        for (const { m } of order) deliver(r, m)
        for (const { m } of order.slice(0, 3)) deliver(r, m)
      }
      const final = (r: number): Array<[string, string]> => log.map(m => {
        const s = verdicts[r].get(m.id) ?? new Set()
        assert.ok(!(s.has('accepted') && s.has('rejected')), `${m.id} both accepted and rejected`)
        assert.ok(s.has('accepted') || s.has('rejected'), `${m.id} never decided on replica ${r}`)
        return [m.id, s.has('accepted') ? 'accepted' : 'rejected']
      })
      for (let r = 0; r < R; r++) {
        assert.deepEqual(replicas[r].pendingIds(), [])
        assert.equal(replicas[r].doc.store.pendingStructs, null)
        assert.equal(replicas[r].doc.store.pendingDs, null)
      }
      for (let r = 1; r < R; r++) {
        assert.deepEqual(final(r), final(0))
        assert.deepEqual(replicas[r].objects(), replicas[0].objects())
        assert.deepEqual(replicas[r].doc.getMap(OBJECTS_KEY).toJSON(), replicas[0].doc.getMap(OBJECTS_KEY).toJSON())
        assert.deepEqual(svEntries(replicas[r]), svEntries(replicas[0]))
      }
      // and every object lies where its last writer was allowed to put it
      for (const v of replicas[0].objects().values()) checkObjectValue(v)
    }), { seed: 42, numRuns: 150 })
  })

  it('the property sees rejections and held updates (a sanity check on the generator)', () => {
    // one fixed run: a stranger's and a landlord's rejected edits, and out-of-order delivery
    const a = new World()
    const b = new World()
    const u1 = placeObject(a, OWNER, 'a', obj(10, 10)); a.offer('1', OWNER, u1, ctx)
    const u2 = moveObject(a, LANDLORD, 'a', { position: [80, 0, 80] }); assert.equal(a.offer('2', LANDLORD, u2, ctx).rejected.length, 1)
    const u3 = moveObject(a, STRANGER, 'a', { position: [5, 0, 5] }); assert.equal(a.offer('3', STRANGER, u3, ctx).rejected.length, 1)
    const u4 = moveObject(a, LANDLORD, 'a', { position: [5, 0, 5] }); assert.equal(a.offer('4', LANDLORD, u4, ctx).accepted.length, 1)
    // b gets the landlord's two clock-0 updates before the owner's: both wait, then the valid one wins
    assert.deepEqual(b.offer('4', LANDLORD, u4, ctx).held, ['4'])
    assert.deepEqual(b.offer('2', LANDLORD, u2, ctx).held, ['2'])
    const r = b.offer('1', OWNER, u1, ctx)
    assert.deepEqual(r.accepted.map(x => x.id), ['1', '4'])
    assert.deepEqual(r.rejected.map(x => [x.id, x.error.name]), [['2', 'ConflictingUpdateError']])
    assert.equal(b.offer('3', STRANGER, u3, ctx).rejected[0].error.name, 'EditNotAllowedError')
    assert.deepEqual(a.objects(), b.objects())
  })
})
