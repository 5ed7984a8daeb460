import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import {
  Interest, aoiCellRadius, cellKey, cellOf, cellsAround, interpolate, presenceDelay, presenceInterval, slerp,
  AOI_HYSTERESIS, AOI_RADIUS, FAR_BEACON_MOVING_MS, FAR_BEACON_STILL_MS, MAX_CELL_RADIUS, MAX_COORDINATE_M,
  MAX_MEMBER_ID_LENGTH, MAX_NEAR_MEMBERS, MAX_PRESENCE_HZ, MAX_ROSTER_MEMBERS, MEMBER_TIMEOUT_MS, MOVING_INTERVAL_MS,
  NEAR_RANK_MARGIN, STILL_HEARTBEAT_MS, type Pose, type Quat
} from '../../src/space/interest.ts'
import {
  PresenceTrack, decodePresence, encodePresence, seqAfter, type Presence,
  MAX_AVATAR_BYTES, MAX_DISPLAY_NAME_BYTES, MAX_PRESENCE_FRAME_BYTES, MAX_PRESENCE_TIME_MS,
  PRESENCE_MOVE_FRAME_BYTES, PRESENCE_TRACK_RESET_MS
} from '../../src/space/presence-wire.ts'
import { fromHex, toHex } from '../helpers/bytes.ts'

const id = (i: number): string => `m${String(i).padStart(4, '0')}`
const norm = (q: number[]): number => Math.hypot(...q)
const close = (a: number[], b: number[], eps = 1e-9): boolean => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) <= eps)
/** Same rotation: q and -q are one rotation. */
const sameRotation = (a: Quat, b: Quat, eps = 1e-9): boolean => close(a, b, eps) || close(a, b.map(x => -x), eps)

describe('interest: cells', () => {
  it('puts points in cells, negative side included, with no -0', () => {
    assert.deepEqual(cellOf(0, 0, 16), { cx: 0, cz: 0 })
    assert.deepEqual(cellOf(15.99, 16, 16), { cx: 0, cz: 1 })
    assert.deepEqual(cellOf(-0.01, -16, 16), { cx: -1, cz: -1 })
    assert.deepEqual(cellOf(-16.01, 47.9, 16), { cx: -2, cz: 2 })
    assert.ok(Object.is(cellOf(-0, -0, 16).cx, 0))
    assert.equal(cellKey(cellOf(-20, 33, 16)), '-2,2')
  })

  it('refuses bad coordinates and cell sizes, with MAX_COORDINATE_M at the edge', () => {
    assert.deepEqual(cellOf(MAX_COORDINATE_M, -MAX_COORDINATE_M, 1000), { cx: 1000, cz: -1000 })
    for (const [x, z, s] of [[NaN, 0, 16], [0, Infinity, 16], [MAX_COORDINATE_M + 1, 0, 16], [0, 0, 0], [0, 0, -1], [0, 0, NaN]]) {
      assert.throws(() => cellOf(x, z, s), { name: 'InvalidInterestInputError' })
    }
  })

  it('lists the neighbourhood, centre first, up to MAX_CELL_RADIUS', () => {
    assert.deepEqual(cellsAround({ cx: 3, cz: -2 }, 0), [{ cx: 3, cz: -2 }])
    const ring = cellsAround({ cx: 3, cz: -2 }, 1)
    assert.equal(ring.length, 9)
    assert.deepEqual(ring[0], { cx: 3, cz: -2 })
    assert.equal(new Set(ring.map(cellKey)).size, 9)
    assert.ok(ring.every(c => Math.abs(c.cx - 3) <= 1 && Math.abs(c.cz + 2) <= 1))
    assert.equal(cellsAround({ cx: 0, cz: 0 }, MAX_CELL_RADIUS).length, (2 * MAX_CELL_RADIUS + 1) ** 2)
    for (const r of [MAX_CELL_RADIUS + 1, -1, 1.5]) assert.throws(() => cellsAround({ cx: 0, cz: 0 }, r), { name: 'InvalidInterestInputError' })
    assert.throws(() => cellsAround({ cx: 0.5, cz: 0 }, 1), { name: 'InvalidInterestInputError' })
  })

  it('covers the area of interest with aoiCellRadius cells', () => {
    assert.equal(aoiCellRadius(16), Math.ceil((AOI_RADIUS + AOI_HYSTERESIS) / 16))
    assert.equal(aoiCellRadius(16, 32), 2)
    assert.equal(aoiCellRadius(1, MAX_CELL_RADIUS), MAX_CELL_RADIUS)
    assert.throws(() => aoiCellRadius(1, MAX_CELL_RADIUS + 0.5), { name: 'InvalidInterestInputError' })
    // Anyone within the radius is in a listened cell (property).
    fc.assert(fc.property(fc.double({ min: -1000, max: 1000, noNaN: true }), fc.double({ min: -1000, max: 1000, noNaN: true }),
      fc.double({ min: 0, max: Math.PI * 2, noNaN: true }), fc.double({ min: 0, max: AOI_RADIUS + AOI_HYSTERESIS, noNaN: true }), (x, z, a, d) => {
        const around = new Set(cellsAround(cellOf(x, z, 16), aoiCellRadius(16)).map(cellKey))
        assert.ok(around.has(cellKey(cellOf(x + d * Math.cos(a), z + d * Math.sin(a), 16))))
      }), { seed: 3, numRuns: 300 })
  })
})

describe('interest: near set', () => {
  it('enters at AOI_RADIUS, leaves beyond AOI_RADIUS + AOI_HYSTERESIS, and does not flap', () => {
    const i = new Interest()
    i.update('a', AOI_RADIUS + 0.01, 0, 0)
    assert.deepEqual(i.near(0), { near: new Set(), entered: [], left: [] })
    i.update('a', AOI_RADIUS, 0, 10)
    assert.deepEqual(i.near(10).entered, ['a'])
    let changes = 0
    for (let t = 0; t < 200; t++) {
      i.update('a', t % 2 === 0 ? AOI_RADIUS - 0.5 : AOI_RADIUS + AOI_HYSTERESIS - 0.01, 0, 20 + t)
      const r = i.near(20 + t)
      changes += r.entered.length + r.left.length
      assert.ok(r.near.has('a'))
    }
    assert.equal(changes, 0)
    i.update('a', 0, AOI_RADIUS + AOI_HYSTERESIS, 300)
    assert.deepEqual(i.near(300).left, [])
    i.update('a', 0, AOI_RADIUS + AOI_HYSTERESIS + 0.01, 301)
    assert.deepEqual(i.near(301).left, ['a'])
    i.update('a', 0, AOI_RADIUS + 1, 302)
    assert.deepEqual(i.near(302).entered, [], 'inside the hysteresis band a newcomer does not enter')
  })

  it('measures from my own position', () => {
    const i = new Interest()
    i.update('a', 100, 100, 0)
    assert.equal(i.near(0).near.size, 0)
    i.setPosition(90, 100)
    assert.deepEqual(i.near(0).entered, ['a'])
    assert.deepEqual(i.position, { x: 90, z: 100 })
    assert.throws(() => { i.setPosition(NaN, 0) }, { name: 'InvalidInterestInputError' })
  })

  it('caps a crowd at MAX_NEAR_MEMBERS, the nearest, and keeps the set stable', () => {
    const i = new Interest()
    const n = 300
    const order = [...Array(n).keys()].sort((a, b) => ((a * 7919) % n) - ((b * 7919) % n)) // a fixed shuffle
    for (const k of order) i.update(id(k), 0.1 * k, 0, 0)
    const first = i.near(0)
    assert.equal(first.near.size, MAX_NEAR_MEMBERS)
    assert.deepEqual([...first.near].sort(), [...Array(MAX_NEAR_MEMBERS).keys()].map(id))
    // Everyone jostles by up to the margin: nothing changes.
    for (let t = 1; t <= 20; t++) {
      for (const k of order) i.update(id(k), 0.1 * k + (((k * t) % 3) - 1) * NEAR_RANK_MARGIN * 0.49, 0, t)
      const r = i.near(t)
      assert.deepEqual([r.entered, r.left], [[], []], `tick ${t}`)
    }
    // A newcomer much closer than the farthest near member displaces it; one barely closer does not.
    for (const k of order) i.update(id(k), 0.1 * k, 0, 30)
    const farthest = id(MAX_NEAR_MEMBERS - 1) // at 3.1 m, ranked 3.1 - margin
    i.update('close', 0, 3.1 - NEAR_RANK_MARGIN + 0.05, 30)
    assert.deepEqual(i.near(30), { near: i.nearSet, entered: [], left: [] })
    i.update('close', 0, 0, 31)
    const r = i.near(31)
    assert.deepEqual([r.entered, r.left], [['close'], [farthest]])
    assert.equal(r.near.size, MAX_NEAR_MEMBERS)
  })

  it('breaks ties in one spot by id, and keeps them', () => {
    const i = new Interest()
    for (let k = 499; k >= 0; k--) i.update(id(k), 5, 5, 0)
    i.setPosition(5, 5)
    const first = [...i.near(0).near].sort()
    assert.deepEqual(first, [...Array(MAX_NEAR_MEMBERS).keys()].map(id))
    i.update(id(400), 5, 5.5, 1)
    assert.deepEqual([...i.near(1).near].sort(), first)
  })

  it('expires members silent for more than MEMBER_TIMEOUT_MS, and reports them as left', () => {
    const i = new Interest()
    i.update('a', 1, 1, 1000)
    i.update('b', 2, 2, 1000)
    i.update('far', 500, 500, 1000)
    assert.deepEqual(i.near(1000).entered, ['a', 'b'])
    i.update('b', 2, 2, 3000)
    assert.equal(i.near(1000 + MEMBER_TIMEOUT_MS).near.size, 2)
    const r = i.near(1000 + MEMBER_TIMEOUT_MS + 1)
    assert.deepEqual(r.left, ['a'])
    assert.ok(!i.roster.has('far') && !i.roster.has('a') && i.roster.has('b'))
    assert.deepEqual(i.expire(3000 + MEMBER_TIMEOUT_MS + 1), ['b'])
    assert.deepEqual(i.near(3000 + MEMBER_TIMEOUT_MS + 1).left, ['b'])
    i.update('c', 0, 0, 0)
    i.near(0)
    assert.equal(i.remove('c'), true)
    assert.equal(i.remove('c'), false)
    assert.deepEqual(i.near(0).left, ['c'])
  })

  it('refuses members past MAX_ROSTER_MEMBERS, and bad ids', () => {
    const i = new Interest()
    for (let k = 0; k < MAX_ROSTER_MEMBERS; k++) i.update(id(k), k % 1000, 0, 0)
    assert.throws(() => { i.update('one-more', 0, 0, 0) }, { name: 'RosterFullError' })
    i.update(id(0), 1, 1, 1) // known members still move
    i.remove(id(1))
    i.update('one-more', 0, 0, 1)
    assert.equal(i.roster.size, MAX_ROSTER_MEMBERS)
    const j = new Interest()
    j.update('x'.repeat(MAX_MEMBER_ID_LENGTH), 0, 0, 0)
    for (const bad of ['', 'x'.repeat(MAX_MEMBER_ID_LENGTH + 1)]) assert.throws(() => { j.update(bad, 0, 0, 0) }, { name: 'InvalidInterestInputError' })
    assert.throws(() => { j.update('a', MAX_COORDINATE_M + 1, 0, 0) }, { name: 'InvalidInterestInputError' })
    assert.throws(() => { j.update('a', 0, 0, NaN) }, { name: 'InvalidInterestInputError' })
    assert.throws(() => new Interest({ maxNear: -1 }), { name: 'InvalidInterestInputError' })
  })

  it('is symmetric between two peers without a cap (property)', () => {
    const pos = fc.tuple(fc.double({ min: -60, max: 60, noNaN: true }), fc.double({ min: -60, max: 60, noNaN: true }))
    fc.assert(fc.property(fc.array(pos, { minLength: 2, maxLength: 12 }), points => {
      const views = points.map(([x, z], k) => {
        const v = new Interest({ maxNear: 1000 })
        v.setPosition(x, z)
        points.forEach(([px, pz], m) => { if (m !== k) v.update(id(m), px, pz, 0) })
        return v.near(0).near
      })
      for (let a = 0; a < points.length; a++) {
        for (let b = 0; b < points.length; b++) {
          if (a !== b) assert.equal(views[a].has(id(b)), views[b].has(id(a)))
        }
      }
    }), { seed: 5, numRuns: 200 })
  })
})

describe('interest: presence rate', () => {
  it('sends at 20 Hz moving, heartbeats still, beacons rarely', () => {
    assert.equal(MOVING_INTERVAL_MS, 1000 / MAX_PRESENCE_HZ)
    assert.equal(presenceDelay({ moving: true, now: 5 }), 0)
    assert.equal(presenceDelay({ moving: true, lastSentAt: 1000, now: 1000 }), 50)
    assert.equal(presenceDelay({ moving: true, lastSentAt: 1000, now: 1030 }), 20)
    assert.equal(presenceDelay({ moving: true, lastSentAt: 1000, now: 1080 }), 0)
    assert.equal(presenceDelay({ moving: false, lastSentAt: 1000, now: 1000 }), STILL_HEARTBEAT_MS)
    assert.equal(presenceDelay({ moving: true, lastSentAt: 1000, now: 1000, channel: 'far' }), FAR_BEACON_MOVING_MS)
    assert.equal(presenceDelay({ moving: false, lastSentAt: 1000, now: 1500, channel: 'far' }), FAR_BEACON_STILL_MS - 500)
    assert.equal(presenceDelay({ moving: false, lastSentAt: 9000, now: 1000 }), STILL_HEARTBEAT_MS, 'a clock stepping back waits one interval at most')
    assert.equal(presenceInterval('near', true), 50)
    assert.throws(() => presenceDelay({ moving: true, lastSentAt: NaN, now: 0 }), { name: 'InvalidInterestInputError' })
  })

  it('keeps a still member alive through one lost beacon', () => {
    assert.ok(MEMBER_TIMEOUT_MS >= 2 * Math.max(FAR_BEACON_STILL_MS, FAR_BEACON_MOVING_MS, STILL_HEARTBEAT_MS))
    assert.ok(MEMBER_TIMEOUT_MS <= 10_000, 'a vanished member disappears within a few seconds')
  })
})

describe('interest: interpolation', () => {
  const yaw = (deg: number): Quat => [0, Math.sin(deg * Math.PI / 360), 0, Math.cos(deg * Math.PI / 360)]
  const a: Pose = { position: [0, 0, 0], rotation: yaw(0) }
  const b: Pose = { position: [10, 2, -4], rotation: yaw(90) }

  it('gives the endpoints exactly and clamps t', () => {
    assert.deepEqual(interpolate(a, b, 0), a)
    assert.deepEqual(interpolate(a, b, 1), b)
    assert.deepEqual(interpolate(a, b, -3), a)
    assert.deepEqual(interpolate(a, b, 7), b)
    assert.throws(() => interpolate(a, b, NaN), { name: 'InvalidInterestInputError' })
  })

  it('moves linearly and turns at a constant rate', () => {
    const mid = interpolate(a, b, 0.5)
    assert.deepEqual(mid.position, [5, 1, -2])
    assert.ok(close(mid.rotation, yaw(45)))
    assert.ok(close(interpolate(a, b, 0.25).rotation, yaw(22.5)))
  })

  it('takes the shorter arc, and handles q and -q as one rotation', () => {
    const neg = yaw(90).map(x => -x) as Quat
    assert.ok(sameRotation(interpolate(a, { ...b, rotation: neg }, 0.5).rotation, yaw(45)))
    assert.ok(sameRotation(slerp(yaw(30), yaw(30).map(x => -x) as Quat, 0.5), yaw(30)))
    assert.ok(sameRotation(slerp(yaw(350), yaw(10), 0.5), yaw(0)))
    assert.ok(sameRotation(slerp(yaw(10), yaw(10.001), 0.5), yaw(10.0005)), 'nearly equal rotations use nlerp')
    assert.throws(() => slerp([0, 0, 0, 0], yaw(0), 0.5), { name: 'InvalidInterestInputError' })
  })

  it('always returns a unit quaternion (property)', () => {
    const q = fc.tuple(fc.double({ min: -1, max: 1, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true }),
      fc.double({ min: -1, max: 1, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true })).filter(v => norm(v) > 0.01)
    fc.assert(fc.property(q, q, fc.double({ min: 0, max: 1, noNaN: true }), (p, r, t) => {
      const out = interpolate({ position: [0, 0, 0], rotation: p }, { position: [1, 1, 1], rotation: r }, t)
      assert.ok(Math.abs(norm(out.rotation) - 1) < 1e-12)
    }), { seed: 9, numRuns: 500 })
  })
})

const AVATAR = CID.createV1(0x55, createDigest(0x12, createHash('sha256').update('avatar').digest())).toString()
/** A valid CID string of exactly `length` characters (identity multihash, base32). */
function cidOfLength (length: number): string {
  for (let n = 0; n < 200; n++) {
    const s = CID.createV1(0x55, createDigest(0x00, new Uint8Array(n))).toString()
    if (s.length === length) return s
  }
  throw new Error(`no CID of ${length} characters`)
}

// Encoded samples of version 1; they stay as fixtures when the format moves on.
const MOVE_FRAME = '010101fffffffe018bcfe5687b3fc0000000000000c0100000000000003f3504f3000000003f3504f3'
const FULL_FRAME = '01020000000001018bcfe56800412000003fe0000041a000000000000000000000000000003f8000003b6261666b7265696568787075687472356636763465753462796a6f326a376b6b72686a76643770736d667534696d6e70647a623362647162377679095a6fc3ab20f09f8c8d'

function move (over: Partial<Presence> = {}): Presence {
  return { kind: 'move', seq: 1, time: 1000, position: [1, 2, 3], rotation: [0, 0, 0, 1], ...over } as Presence
}

function full (over: Partial<Presence> = {}): Presence {
  return { kind: 'full', seq: 1, time: 1000, position: [1, 2, 3], rotation: [0, 0, 0, 1], avatar: AVATAR, name: 'Ann', ...over } as Presence
}

function malformed (bytes: Uint8Array, why: string): void {
  assert.throws(() => decodePresence(bytes), { name: 'MalformedPresenceError' }, why)
}

describe('presence wire: frames', () => {
  it('decodes and re-encodes the version 1 fixtures', () => {
    const m = decodePresence(fromHex(MOVE_FRAME))
    assert.deepEqual(m, { kind: 'move', seq: 0xfffffffe, time: 1_700_000_000_123, position: [1.5, 0, -2.25], rotation: m.rotation, moving: true })
    assert.ok(close(m.rotation, [0, Math.SQRT1_2, 0, Math.SQRT1_2], 1e-7))
    assert.equal(toHex(encodePresence(m)), MOVE_FRAME)
    const f = decodePresence(fromHex(FULL_FRAME))
    assert.deepEqual(f, { kind: 'full', seq: 1, time: 1_700_000_000_000, position: [10, 1.75, 20], rotation: [0, 0, 0, 1], moving: false, avatar: AVATAR, name: 'Zoë 🌍' })
    assert.equal(toHex(encodePresence(f)), FULL_FRAME)
  })

  it('has the documented sizes', () => {
    assert.equal(encodePresence(move()).length, PRESENCE_MOVE_FRAME_BYTES)
    assert.equal(PRESENCE_MOVE_FRAME_BYTES, 41)
    const biggest = encodePresence(full({ avatar: cidOfLength(MAX_AVATAR_BYTES), name: 'é'.repeat(MAX_DISPLAY_NAME_BYTES / 2) }))
    assert.equal(biggest.length, MAX_PRESENCE_FRAME_BYTES)
    assert.equal(decodePresence(biggest).kind, 'full')
    assert.deepEqual(decodePresence(encodePresence(full({ avatar: null, name: '' }))), { ...full({ avatar: null, name: '' }), moving: false })
  })

  it('enforces the avatar and name limits at their edges', () => {
    encodePresence(full({ avatar: cidOfLength(MAX_AVATAR_BYTES) }))
    assert.throws(() => encodePresence(full({ avatar: cidOfLength(MAX_AVATAR_BYTES + 1) })), { name: 'MalformedPresenceError' })
    encodePresence(full({ name: 'x'.repeat(MAX_DISPLAY_NAME_BYTES) }))
    assert.throws(() => encodePresence(full({ name: 'x'.repeat(MAX_DISPLAY_NAME_BYTES + 1) })), { name: 'MalformedPresenceError' })
    assert.throws(() => encodePresence(full({ name: '🌍'.repeat(MAX_DISPLAY_NAME_BYTES / 4) + 'x' })), { name: 'MalformedPresenceError' })
    for (const name of ['a\nb', 'tab\t', '\u0085', '\ud800']) assert.throws(() => encodePresence(full({ name })), { name: 'MalformedPresenceError' }, JSON.stringify(name))
    for (const avatar of ['', 'not a cid', 'Qm', 'bafy\u00e9']) assert.throws(() => encodePresence(full({ avatar })), { name: 'MalformedPresenceError' }, avatar)
    // The same limits on the decoding side, from crafted bytes.
    const head = encodePresence(full({ avatar: null, name: '' })).subarray(0, PRESENCE_MOVE_FRAME_BYTES)
    const frame = (avatar: Uint8Array, name: Uint8Array, extra: number[] = []): Uint8Array =>
      new Uint8Array([...head, avatar.length, ...avatar, name.length, ...name, ...extra])
    const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
    assert.equal(decodePresence(frame(enc(AVATAR), enc('x'.repeat(MAX_DISPLAY_NAME_BYTES)))).kind, 'full')
    malformed(frame(enc(AVATAR), enc('x'.repeat(MAX_DISPLAY_NAME_BYTES + 1))), 'long name')
    malformed(frame(enc(cidOfLength(MAX_AVATAR_BYTES + 1)), enc('x')), 'long avatar')
    malformed(frame(enc('hello'), enc('x')), 'avatar not a CID')
    malformed(frame(enc(AVATAR), Uint8Array.of(0xc3, 0x28)), 'invalid UTF-8')
    malformed(frame(enc(AVATAR), Uint8Array.of(0xed, 0xa0, 0x80)), 'encoded surrogate')
    malformed(frame(enc(AVATAR), enc('a\u0000b')), 'control character')
    malformed(frame(enc(AVATAR), enc('x'), [0]), 'trailing byte')
    malformed(new Uint8Array([...head, 5, 1, 2]), 'avatar overruns')
    malformed(new Uint8Array([...head, 0]), 'no name length')
    malformed(new Uint8Array([...head]), 'no avatar length')
  })

  it('rejects every kind of malformed move frame', () => {
    const good = encodePresence(move())
    const patch = (at: number, bytes: number[]): Uint8Array => { const b = Uint8Array.from(good); b.set(bytes, at); return b }
    const f32 = (v: number): number[] => { const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v); return [...b] }
    malformed(good.subarray(0, PRESENCE_MOVE_FRAME_BYTES - 1), 'short')
    malformed(new Uint8Array([...good, 0]), 'trailing byte')
    malformed(new Uint8Array(MAX_PRESENCE_FRAME_BYTES + 1), 'too long')
    malformed(patch(0, [2]), 'version 2')
    malformed(patch(0, [0]), 'version 0')
    for (const kind of [0, 3, 255]) malformed(patch(1, [kind]), `kind ${kind}`)
    for (const flags of [2, 0x80, 0xff]) malformed(patch(2, [flags]), `flags ${flags}`)
    for (const v of [NaN, Infinity, -Infinity, MAX_COORDINATE_M * 2]) {
      for (const at of [13, 17, 21]) malformed(patch(at, f32(v)), `position ${v}`)
    }
    malformed(patch(25, [...f32(0), ...f32(0), ...f32(0), ...f32(0)]), 'zero quaternion')
    malformed(patch(25, [...f32(0), ...f32(0), ...f32(0), ...f32(2)]), 'quaternion of norm 2')
    malformed(patch(25, [...f32(0), ...f32(0), ...f32(0), ...f32(1.01)]), 'quaternion off by 1%')
    malformed(patch(37, f32(NaN)), 'NaN in rotation')
    assert.equal(decodePresence(patch(37, f32(1.0005))).rotation[3], 1, 'within tolerance, renormalised')
  })

  it('refuses to encode what it would not decode', () => {
    const bad: Array<Partial<Presence>> = [
      { seq: -1 }, { seq: 2 ** 32 }, { seq: 1.5 }, { time: -1 }, { time: MAX_PRESENCE_TIME_MS + 1 }, { time: 0.5 },
      { position: [0, 0, NaN] as never }, { position: [0, MAX_COORDINATE_M + 1, 0] }, { position: [0, 0] as never },
      { rotation: [0, 0, 0, 0] }, { rotation: [0, 0, Infinity, 1] }, { rotation: [0, 0, 1] as never }, { kind: 'walk' as never },
      { moving: 'yes' as never }
    ]
    for (const over of bad) assert.throws(() => encodePresence(move(over)), { name: 'MalformedPresenceError' }, JSON.stringify(over))
    const edge = move({ seq: 2 ** 32 - 1, time: MAX_PRESENCE_TIME_MS, position: [MAX_COORDINATE_M, -MAX_COORDINATE_M, 0] })
    assert.deepEqual(decodePresence(encodePresence(edge)), { ...edge, moving: false })
    assert.deepEqual(decodePresence(encodePresence(move({ rotation: [0, 0, 0, 5] }))).rotation, [0, 0, 0, 1], 'the encoder normalises')
  })

  it('random bytes decode or fail only with MalformedPresenceError (property)', () => {
    const check = (bytes: Uint8Array): void => {
      try {
        const p = decodePresence(bytes)
        assert.ok(Math.abs(norm(p.rotation) - 1) < 1e-12)
        assert.deepEqual(decodePresence(encodePresence(p)).kind, p.kind)
      } catch (err) {
        assert.equal((err as Error).name, 'MalformedPresenceError')
      }
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: MAX_PRESENCE_FRAME_BYTES + 8 }), check), { seed: 21, numRuns: 2000 })
    // Mutations of valid frames reach deeper.
    const valid = [fromHex(MOVE_FRAME), fromHex(FULL_FRAME)]
    fc.assert(fc.property(fc.nat({ max: 1 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.integer({ min: -3, max: 3 }), (which, edits, cut) => {
      const b = Uint8Array.from(valid[which])
      for (const [at, v] of edits) b[at % b.length] = v
      check(cut < 0 ? b.subarray(0, b.length + cut) : new Uint8Array([...b, ...new Uint8Array(cut)]))
    }), { seed: 22, numRuns: 3000 })
  })

  it('round-trips any presence, up to f32 rounding (property)', () => {
    const coord = fc.double({ min: -MAX_COORDINATE_M, max: MAX_COORDINATE_M, noNaN: true })
    const unit = fc.double({ min: -1, max: 1, noNaN: true })
    const quat = fc.tuple(unit, unit, unit, unit).filter(q => norm(q) > 0.01)
    const common = {
      seq: fc.nat({ max: 2 ** 32 - 1 }),
      time: fc.nat({ max: MAX_PRESENCE_TIME_MS }),
      position: fc.tuple(coord, coord, coord),
      rotation: quat,
      moving: fc.boolean()
    }
    const presence = fc.oneof(
      fc.record({ kind: fc.constant('move' as const), ...common }),
      fc.record({
        kind: fc.constant('full' as const),
        ...common,
        avatar: fc.constantFrom(null, AVATAR, cidOfLength(MAX_AVATAR_BYTES)),
        name: fc.string({ unit: 'grapheme', maxLength: 16 }).filter(s => new TextEncoder().encode(s).length <= MAX_DISPLAY_NAME_BYTES && !/[\u0000-\u001f\u007f-\u009f]/u.test(s))
      })
    )
    fc.assert(fc.property(presence, p => {
      const bytes = encodePresence(p as Presence)
      assert.ok(bytes.length <= MAX_PRESENCE_FRAME_BYTES)
      const q = decodePresence(bytes)
      const n = norm(p.rotation)
      assert.deepEqual({ ...q, position: [], rotation: [] }, { ...p, position: [], rotation: [] })
      assert.deepEqual(q.position, p.position.map(Math.fround))
      assert.ok(close(q.rotation, p.rotation.map(x => x / n), 1e-6))
      assert.ok(Math.abs(norm(q.rotation) - 1) < 1e-12)
      assert.deepEqual(encodePresence(q), bytes, 'a decoded frame re-encodes to the same bytes')
    }), { seed: 23, numRuns: 1000 })
  })
})

describe('presence wire: PresenceTrack', () => {
  it('passes newer frames and drops duplicates, stale and reordered ones', () => {
    const t = new PresenceTrack()
    const seqs = [1, 2, 2, 5, 3, 4, 6, 6, 7]
    assert.deepEqual(seqs.map(seq => t.accept({ seq }, 0)), [true, true, false, true, false, false, true, false, true])
    assert.equal(t.dropped, 4)
    assert.equal(t.lastSeq, 7)
  })

  it('handles wrap-around at 2^32', () => {
    const t = new PresenceTrack()
    assert.ok(t.accept({ seq: 0xfffffffe }))
    assert.ok(t.accept({ seq: 0xffffffff }))
    assert.ok(t.accept({ seq: 0 }))
    assert.ok(!t.accept({ seq: 0xffffffff }), 'pre-wrap frame arriving late')
    assert.ok(t.accept({ seq: 2 ** 31 - 1 }), 'just under half the space ahead is newer')
    assert.ok(!t.accept({ seq: 2 ** 32 - 1 }), 'exactly half the space away is not newer')
    assert.ok(seqAfter(0, 0xffffffff) && !seqAfter(0xffffffff, 0) && !seqAfter(5, 5))
    fc.assert(fc.property(fc.nat({ max: 2 ** 32 - 1 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }), (a, d) => {
      const b = (a + d) >>> 0
      assert.ok(seqAfter(b, a) && !seqAfter(a, b))
    }), { seed: 24, numRuns: 500 })
  })

  it('starts afresh after PRESENCE_TRACK_RESET_MS of silence, or on reset()', () => {
    const t = new PresenceTrack()
    assert.ok(t.accept({ seq: 1000 }, 0))
    assert.ok(!t.accept({ seq: 1 }, PRESENCE_TRACK_RESET_MS), 'restart within the window is taken for a stale frame')
    assert.ok(t.accept({ seq: 1 }, PRESENCE_TRACK_RESET_MS + 1))
    assert.ok(!t.accept({ seq: 0 }), 'without a clock only order counts')
    t.reset()
    assert.equal(t.lastSeq, undefined)
    assert.ok(t.accept({ seq: 0 }))
    for (const seq of [-1, 2 ** 32, 0.5, NaN]) assert.throws(() => t.accept({ seq }), { name: 'MalformedPresenceError' })
  })
})
