/**
 * Who hears whom (src/voice/hearing.ts), as properties: never more than the bound, never one out
 * of range, excluded or silent, nearest first, the same answer whatever the order of candidates;
 * and the wire's encoders as round trips with their limits.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { chooseHeard, distance, inEarshot, HEARING_RANGE_M, isTalking, MAX_HEARD_SPEAKERS, TALKING_HOLD_MS, type Candidate, type Position } from '../../src/voice/hearing.ts'
import {
  decodeClientFrame, decodeClientFrameFromPeer, decodeVoiceFrame, encodeAudio, encodeClientFrame, encodeTalking, encodeWant,
  MAX_VOICE_CLIENT_MESSAGE_BYTES, MAX_VOICE_FRAME_BYTES, MAX_VOICE_PAYLOAD_BYTES, VOICE_HEADER_BYTES
} from '../../src/voice/wire.ts'

const NOW = 1_000_000
const coord = fc.double({ min: -100, max: 100, noNaN: true })
const position = fc.tuple(coord, coord, coord) as fc.Arbitrary<Position>
const candidate = fc.record({
  did: fc.constantFrom(...Array.from({ length: 24 }, (_, i) => `did:key:z${i}`)),
  position,
  talkingAt: fc.oneof(fc.constant(0), fc.integer({ min: NOW - 2 * TALKING_HOLD_MS, max: NOW }))
}) as fc.Arbitrary<Candidate>
const setup = fc.record({
  me: position,
  candidates: fc.array(candidate, { maxLength: 40 }),
  max: fc.integer({ min: 0, max: 12 }),
  rangeM: fc.double({ min: 1, max: 150, noNaN: true }),
  excludedSet: fc.uniqueArray(fc.integer({ min: 0, max: 23 }), { maxLength: 8 })
})

describe('chooseHeard', () => {
  it('never more than max; never out of range, excluded or silent; nearest first; order of candidates does not matter', () => {
    fc.assert(fc.property(setup, fc.nat(), ({ me, candidates, max, rangeM, excludedSet }, shuffleSeed) => {
      const excluded = (did: string): boolean => excludedSet.includes(Number(did.slice('did:key:z'.length)))
      const opts = { now: NOW, max, rangeM, excluded }
      const heard = chooseHeard(me, candidates, opts)
      assert.ok(heard.length <= max)
      assert.equal(new Set(heard).size, heard.length, 'no did twice')
      // The first entry of a did is the one that counts.
      const first = new Map<string, Candidate>()
      for (const c of candidates) if (!first.has(c.did)) first.set(c.did, c)
      const eligible = [...first.values()].filter(c => isTalking(c.talkingAt, NOW) && distance(me, c.position) <= rangeM && !excluded(c.did))
      for (const did of heard) {
        const c = first.get(did) as Candidate
        assert.ok(eligible.includes(c), `${did} is talking, in range and not excluded`)
      }
      assert.equal(heard.length, Math.min(max, eligible.length), 'as many as the bound allows')
      const d = heard.map(did => distance(me, (first.get(did) as Candidate).position))
      for (let i = 1; i < d.length; i++) assert.ok(d[i - 1] <= d[i], 'nearest first')
      // Nobody left out is nearer than the farthest heard.
      if (heard.length > 0) for (const c of eligible) if (!heard.includes(c.did)) assert.ok(distance(me, c.position) >= d[d.length - 1])
      // Stable: the same set of distinct candidates in another order gives the same answer.
      const distinct = [...first.values()]
      const shuffled = [...distinct].sort((a, b) => ((a.did.length * 31 + shuffleSeed) % 7) - ((b.did.length * 17 + shuffleSeed) % 5) || (a.did < b.did ? 1 : -1))
      assert.deepEqual(chooseHeard(me, shuffled, opts), chooseHeard(me, distinct, opts))
    }), { seed: 17, numRuns: 500 })
  })

  it('ties in distance go by did; the defaults are the named constants', () => {
    const at = (x: number): Position => [x, 0, 0]
    const cs: Candidate[] = [{ did: 'b', position: at(5), talkingAt: NOW }, { did: 'a', position: at(-5), talkingAt: NOW }, { did: 'c', position: at(HEARING_RANGE_M + 0.01), talkingAt: NOW }]
    assert.deepEqual(chooseHeard([0, 0, 0], cs, { now: NOW, max: MAX_HEARD_SPEAKERS, rangeM: HEARING_RANGE_M, excluded: () => false }), ['a', 'b'])
    assert.deepEqual(chooseHeard([0, 0, 0], cs, { now: NOW + TALKING_HOLD_MS, max: 8, rangeM: 30, excluded: () => false }), [], 'silent after the hold')
  })
})

describe('inEarshot', () => {
  it('the members within range, nearest first, at most max, whatever presence calls near', () => {
    const me: Position = [0, 0, 0]
    const members = [
      { did: 'd', position: [40, 0, 0] as Position, near: true },
      { did: 'c', position: [0, 0, 20] as Position, near: false },
      { did: 'b', position: [3, 0, 4] as Position, near: false },
      { did: 'a', position: [5, 0, 0] as Position, near: true }
    ]
    assert.deepEqual(inEarshot(me, members, HEARING_RANGE_M, 8).map(m => m.did), ['a', 'b', 'c'])
    assert.deepEqual(inEarshot(me, members, HEARING_RANGE_M, 1).map(m => m.did), ['a'])
    assert.deepEqual(inEarshot(me, members, 4.9, 8).map(m => m.did), [])
    assert.deepEqual(inEarshot(me, [{ did: 'x', position: [Number.NaN, 0, 0] as Position }], HEARING_RANGE_M, 8), [])
  })
})

describe('voice wire', () => {
  it('frames round-trip; past MAX_VOICE_PAYLOAD_BYTES and malformed input are named errors', () => {
    fc.assert(fc.property(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 255 }), fc.uint8Array({ minLength: 1, maxLength: MAX_VOICE_PAYLOAD_BYTES }), (seq, ts, level, data) => {
      const f = decodeVoiceFrame(encodeAudio({ seq, ts, level, data }))
      assert.deepEqual(f, { type: 'audio', seq, ts, level, payload: data })
      assert.deepEqual(decodeClientFrame(encodeAudio({ seq, ts, level, data })), { seq, ts, level, data })
      const out = decodeClientFrameFromPeer(encodeClientFrame('did:key:zSpeaker', { seq, ts, level, data }))
      assert.deepEqual(out, { did: 'did:key:zSpeaker', seq, ts, level, data })
    }), { seed: 3, numRuns: 200 })
    assert.deepEqual(decodeVoiceFrame(encodeWant(true)), { type: 'want', on: true })
    assert.deepEqual(decodeVoiceFrame(encodeTalking(300)), { type: 'talking', level: 255 })
    // A frame of MAX_VOICE_FRAME_BYTES (a sealed payload at its largest) parses; one byte more does not.
    const largest = encodeAudio({ seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_FRAME_BYTES - VOICE_HEADER_BYTES) })
    assert.equal(largest.length, MAX_VOICE_FRAME_BYTES)
    assert.equal(decodeVoiceFrame(largest).type, 'audio')
    assert.throws(() => decodeVoiceFrame(encodeAudio({ seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_FRAME_BYTES - VOICE_HEADER_BYTES + 1) })), { name: 'VoiceFrameTooLargeError' })
    assert.throws(() => decodeVoiceFrame(largest, MAX_VOICE_PAYLOAD_BYTES), { name: 'VoiceFrameTooLargeError' }, 'unsealed, the payload bound is MAX_VOICE_PAYLOAD_BYTES')
    const big = encodeAudio({ seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_PAYLOAD_BYTES + 1) })
    assert.throws(() => decodeClientFrame(big), { name: 'VoiceFrameTooLargeError' })
    assert.throws(() => decodeClientFrame(new Uint8Array(MAX_VOICE_CLIENT_MESSAGE_BYTES + 1)), { name: 'VoiceFrameTooLargeError' })
    for (const bad of [new Uint8Array(0), Uint8Array.of(9), Uint8Array.of(1, 0, 0), Uint8Array.of(2, 2), Uint8Array.of(3), encodeWant(true)]) {
      assert.throws(() => decodeClientFrame(bad), { name: 'InvalidVoiceFrameError' })
    }
  })
})
