/**
 * The presence model (src/space/presence.ts) on a hand-held clock: what the service sends whom
 * and when is decided here, by the timing rule of interest.ts, with no network.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  applyBeacon, applyFrame, createPresence, decide, encodeOwn, removeMember, setLook, setPose, streamClosed, sweep, type BeaconSeen
} from '../../src/space/presence.ts'
import {
  AOI_RADIUS, BEACON_MOVING_MS, BEACON_STILL_MS, MOVING_GRACE_MS, MOVING_INTERVAL_MS, NEAR_MEMBER_TIMEOUT_MS, STILL_HEARTBEAT_MS,
  SWEEP_INTERVAL_MS, TICK_SLACK_MS, beaconInterval, goneAfter
} from '../../src/space/interest.ts'
import { decodePresence } from '../../src/space/presence-wire.ts'

const GRID = { width: 256, depth: 256, cell: 16 }
const beacon = (author: string, peer: string, x: number, ts: number): BeaconSeen =>
  ({ author, peer, addrs: [], name: author, avatar: '', position: [x, 0, 128], rotation: [0, 0, 0, 1], ts })
const always = (): boolean => true

describe('presence model', () => {
  it('beacons at the far rate, stretched with the roster', () => {
    const s = createPresence(GRID, 'me', '')
    assert.equal(decide(s, 10_000, { interest: true, ready: always }).beacon, true)
    assert.equal(decide(s, 10_000 + BEACON_STILL_MS - 1, { interest: true, ready: always }).beacon, false)
    assert.equal(decide(s, 10_000 + BEACON_STILL_MS, { interest: true, ready: always }).beacon, true)
    // Moving: the moving rate.
    setPose(s, [128, 0, 128], [0, 0, 0, 1], 15_000 + BEACON_MOVING_MS)
    assert.equal(decide(s, 15_000 + BEACON_MOVING_MS, { interest: true, ready: always }).beacon, true)
    // A crowd of 200 stretches the still interval so beacons in stay bounded.
    for (let i = 0; i < 200; i++) applyBeacon(s, beacon(`m${i}`, `p${i}`, 500, 1), 20_000)
    const last = 15_000 + BEACON_MOVING_MS + beaconInterval(false, 201)
    assert.equal(decide(s, last, { interest: true, ready: always }).beacon, true)
    assert.equal(decide(s, last + BEACON_STILL_MS, { interest: true, ready: always }).beacon, false)
    assert.equal(decide(s, last + beaconInterval(false, 201), { interest: true, ready: always }).beacon, true)
  })

  it('sends 20 Hz while moving and a heartbeat while still, to near members only, a full frame first', () => {
    const s = createPresence(GRID, 'me', '')
    applyBeacon(s, beacon('near', 'pn', 130, 1), 1000)
    applyBeacon(s, beacon('far', 'pf', 128 + AOI_RADIUS + 50, 1), 1000)
    setPose(s, [128, 0, 128], [0, 0, 0, 1], 1000)
    const first = decide(s, 1000, { interest: true, ready: always })
    assert.deepEqual(first.frames?.send, [{ did: 'near', peer: 'pn', kind: 'full' }])
    assert.equal(decide(s, 1000 + MOVING_INTERVAL_MS - TICK_SLACK_MS - 1, { interest: true, ready: always }).frames, undefined)
    const next = decide(s, 1000 + MOVING_INTERVAL_MS, { interest: true, ready: always })
    assert.deepEqual(next.frames?.send, [{ did: 'near', peer: 'pn', kind: 'move' }])
    // Still: a heartbeat a second.
    const still = 1000 + MOVING_GRACE_MS + 1
    assert.equal(decide(s, still + 100, { interest: true, ready: always }).frames, undefined)
    assert.ok(decide(s, 1000 + MOVING_INTERVAL_MS + STILL_HEARTBEAT_MS, { interest: true, ready: always }).frames != null)
    // A change of look, or a new stream, starts with a full frame again.
    setLook(s, { name: 'new me' })
    assert.equal(decide(s, 10_000, { interest: true, ready: always }).frames?.send[0].kind, 'full')
    streamClosed(s, 'pn')
    assert.equal(decide(s, 12_000, { interest: true, ready: always }).frames?.send[0].kind, 'full')
    // A busy stream gets nothing this time, and still its full frame next time.
    setLook(s, { avatar: '' })
    assert.deepEqual(decide(s, 14_000, { interest: true, ready: () => false }).frames?.send, [])
    assert.equal(decide(s, 16_000, { interest: true, ready: always }).frames?.send[0].kind, 'full')
  })

  it('with interest management off, one frame goes to the whole space', () => {
    const s = createPresence(GRID, 'me', '')
    assert.equal(decide(s, 1000, { interest: false, ready: always }).gossipFrame, false, 'nobody to send to')
    applyBeacon(s, beacon('far', 'pf', 10, 1), 1000)
    assert.equal(decide(s, 3000, { interest: false, ready: always }).gossipFrame, true)
  })

  it('applies frames in order and drops the silent: near after NEAR_MEMBER_TIMEOUT_MS, far after goneAfter', () => {
    const me = createPresence(GRID, 'me', '')
    const them = createPresence(GRID, 'them', '')
    setPose(them, [130, 0, 128], [0, 0, 0, 1], 1)
    const f1 = encodeOwn(them, 'full', true, 100)
    const f2 = encodeOwn(them, 'move', true, 150)
    assert.equal(applyFrame(me, 'them', 'pt', f2, 1000), undefined, 'a move frame is not a first contact')
    assert.equal(applyFrame(me, 'them', 'pt', f1, 1000)?.name, 'them')
    assert.equal(applyFrame(me, 'them', 'pt', f2, 1001)?.time, 150)
    assert.equal(applyFrame(me, 'them', 'pt', f1, 1002), undefined, 'an older frame is dropped')
    assert.equal(decodePresence(f2).seq, decodePresence(f1).seq + 1)
    applyBeacon(me, beacon('far', 'pf', 10, 1), 1000)
    assert.deepEqual(sweep(me, 1000, () => false), [])
    assert.equal(sweep(me, 1000 + SWEEP_INTERVAL_MS - 1, () => false), undefined, 'between sweeps')
    assert.deepEqual(sweep(me, 1001 + NEAR_MEMBER_TIMEOUT_MS + SWEEP_INTERVAL_MS, () => false), ['them'])
    assert.deepEqual(sweep(me, 1001 + goneAfter(3) + 2 * SWEEP_INTERVAL_MS, () => false), ['them', 'far'])
    assert.deepEqual(sweep(me, 1001 + goneAfter(3) + 3 * SWEEP_INTERVAL_MS, did => did === 'far'), ['them', 'far'])
    assert.equal(removeMember(me, 'far')?.did, 'far')
    assert.equal(removeMember(me, 'far'), undefined)
  })
})
