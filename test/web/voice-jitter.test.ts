/**
 * The client's voice timing and wire, on their own (pure modules of web/src/voice, no browser):
 * the adaptive jitter buffer (delay from measured jitter within its bounds, late frames dropped,
 * loss concealed then silence, idle between talk spurts) and the voice socket's binary messages.
 * Arrivals are simulated on a clock with seeded jitter, so every run is the same.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  DECIDE_LEAD_S, FRAME_S, JitterBuffer, MAX_CONCEAL_FRAMES, MAX_DELAY_MS, MIN_DELAY_MS, SAFETY_S, type Action
} from '../../web/src/voice/jitter.ts'
import {
  decodeHeardFrame, encodeOwnFrame, MAX_VOICE_PAYLOAD_BYTES, OWN_HEADER_BYTES, seqDiff, VoiceWireError
} from '../../web/src/voice/wire.ts'
import { dropIdleSpeakers, SPEAKER_IDLE_MS } from '../../web/src/voice/playback.ts'
import { seeded } from '../helpers/random.ts'

/** What happened to each seq: played, concealed, or nothing. */
interface Run { played: number[], concealed: number[], actions: Array<Action<number>>, jb: JitterBuffer<number> }

/**
 * Frames 0..n-1 sent every 20 ms (sender clock ts in ms), each arriving after `delay(seq)` s (or
 * never when it returns null); the buffer is pumped every 5 ms.
 */
function simulate (n: number, delay: (seq: number) => number | null, options: { start?: number, firstSeq?: number } = {}): Run {
  const jb = new JitterBuffer<number>()
  const firstSeq = options.firstSeq ?? 0
  const arrivals: Array<{ at: number, seq: number, ts: number }> = []
  for (let i = 0; i < n; i++) {
    const d = delay(i)
    if (d == null) continue
    arrivals.push({ at: i * FRAME_S + d, seq: (firstSeq + i) >>> 0, ts: (1_000_000 + i * 20) >>> 0 })
  }
  arrivals.sort((a, b) => a.at - b.at)
  const run: Run = { played: [], concealed: [], actions: [], jb }
  const end = n * FRAME_S + 1
  let k = 0
  for (let now = options.start ?? 0; now < end; now += 0.005) {
    while (k < arrivals.length && arrivals[k].at <= now) {
      const a = arrivals[k++]
      jb.arrive(a.seq, a.ts, a.at, a.seq)
    }
    for (const act of jb.pull(now)) {
      run.actions.push(act)
      assert.ok(act.at >= now, `a slot is decided before it plays (${act.at} >= ${now})`)
      if (act.kind === 'play') run.played.push(act.seq)
      else run.concealed.push(act.seq)
    }
  }
  return run
}

describe('voice jitter buffer', () => {
  it('steady arrivals: every frame played in order, at the least delay', () => {
    const r = simulate(200, () => 0.005)
    assert.deepEqual(r.played, Array.from({ length: 200 }, (_, i) => i))
    assert.equal(r.jb.stats.late, 0)
    assert.ok(r.jb.stats.targetMs <= (DECIDE_LEAD_S + SAFETY_S) * 1000 + 1, `target ${r.jb.stats.targetMs} ms`)
    // Played frames follow each other exactly, 20 ms apart, while nothing is stretched or skipped.
    const plays = r.actions.filter(a => a.kind === 'play')
    for (let i = 1; i < plays.length; i++) assert.ok(Math.abs(plays[i].at - plays[i - 1].at - FRAME_S) < 1e-9)
  })

  it('jitter raises the delay to cover it, and it is bounded by MAX_DELAY_MS', () => {
    const rnd = seeded(17)
    const r = simulate(500, () => rnd.float() * 0.06)
    // Arrival delays uniform in 0-60 ms: consecutive ones differ by 20 ms on average (J).
    assert.ok(r.jb.stats.jitterMs > 15 && r.jb.stats.jitterMs < 30, `measured jitter ${r.jb.stats.jitterMs} ms`)
    assert.ok(r.jb.stats.targetMs >= 60 + DECIDE_LEAD_S * 1000, `the target (${r.jb.stats.targetMs} ms) covers the spread of arrivals`)
    assert.ok(r.jb.stats.delayMs > 40, `frames wait longer than on a calm path (${r.jb.stats.delayMs} ms)`)
    assert.ok(r.played.length >= 480, `most frames are played (${r.played.length}/500)`)
    // Past the bound: jitter far beyond MAX_DELAY_MS still leaves the target at MAX_DELAY_MS.
    const rnd2 = seeded(18)
    const big = simulate(300, () => rnd2.float() * 0.6)
    assert.equal(big.jb.stats.targetMs, MAX_DELAY_MS)
    assert.ok(big.jb.stats.late > 0, 'frames later than the bound allows are dropped as late')
    assert.ok(MIN_DELAY_MS <= MAX_DELAY_MS)
  })

  it('after a burst of jitter the delay falls back; a drifting clock is followed without loss', () => {
    const rnd = seeded(19)
    const r = simulate(600, seq => seq < 100 ? rnd.float() * 0.12 : 0.005)
    const last = r.actions.filter(a => a.kind === 'play').at(-1) as Action<number>
    const wait = last.at - (last.seq * FRAME_S + 0.005)
    assert.ok(wait < 0.08, `the last frame waited ${Math.round(wait * 1000)} ms`)
    assert.ok(r.jb.stats.skipped > 0, 'the delay was shrunk by skipping frames')
    // The sender's clock runs 0.5% slow against ours: arrivals drift later and later.
    const drift = simulate(1000, seq => 0.005 + seq * FRAME_S * 0.005)
    assert.ok(drift.jb.stats.targetMs < 50, `drift is not taken for jitter (target ${drift.jb.stats.targetMs} ms)`)
    assert.equal(drift.jb.stats.late, 0)
    assert.ok(drift.played.length >= 990, `${drift.played.length}/1000 played`)
  })

  it('a frame that comes after its slot was decided is dropped as late', () => {
    const r = simulate(100, seq => seq === 50 ? 0.5 : 0.005)
    assert.ok(!r.played.includes(50), 'the late frame is not played')
    assert.ok(r.concealed.includes(50), 'its slot was concealed')
    assert.equal(r.jb.stats.late, 1)
    assert.ok(r.played.includes(51))
  })

  it('missing frames are concealed up to MAX_CONCEAL_FRAMES in a row, then silence; the steps count up', () => {
    const gap = MAX_CONCEAL_FRAMES + 5
    const r = simulate(100, seq => seq >= 40 && seq < 40 + gap ? null : 0.005)
    // (The end of the stream is concealed too: the last frame fades out; only the gap is counted here.)
    const steps = r.actions.filter(a => a.kind === 'conceal' && a.seq < 100).map(a => (a as { step: number }).step)
    assert.deepEqual(steps, Array.from({ length: MAX_CONCEAL_FRAMES }, (_, i) => i + 1))
    assert.ok(r.played.includes(40 + gap), 'playing resumes after the gap')
  })

  it('when a speaker stops the buffer goes idle, and the next talk spurt starts afresh', () => {
    const r = simulate(200, seq => seq >= 60 && seq < 140 ? null : 0.005)
    assert.ok(r.played.includes(59) && r.played.includes(140))
    // The last frame of each spurt fades out over MAX_CONCEAL_FRAMES; nothing more is played in the pause.
    assert.equal(r.jb.stats.concealed, 2 * MAX_CONCEAL_FRAMES)
    assert.ok(!r.actions.some(a => a.seq >= 60 + MAX_CONCEAL_FRAMES && a.seq < 140))
    const resumed = r.actions.find(a => a.kind === 'play' && a.seq === 140) as Action<number>
    // Restarted at its arrival plus the target, not 80 frames of silence later than it needed.
    assert.ok(resumed.at - (140 * FRAME_S + 0.005) < MAX_DELAY_MS / 1000 + 0.01)
  })

  it('after a long run of lost frames the timeline jumps to the next one rather than playing the gap out', () => {
    // Frames 100-199 never sent (the sender lost them): 200 comes 20 ms after 99.
    const r = simulate(300, seq => seq >= 100 && seq < 200 ? null : seq >= 200 ? 0.005 - 2 : 0.005)
    const resumed = r.actions.find(a => a.kind === 'play' && a.seq === 200) as Action<number>
    const arrived = 200 * FRAME_S + 0.005 - 2
    assert.ok(resumed.at - arrived <= MAX_DELAY_MS / 1000 + DECIDE_LEAD_S, `frame 200 waited ${Math.round((resumed.at - arrived) * 1000)} ms`)
    assert.ok(r.jb.stats.delayMs < MAX_DELAY_MS, `mean wait ${Math.round(r.jb.stats.delayMs)} ms`)
  })

  it('sequence numbers wrap around u32', () => {
    const r = simulate(100, () => 0.005, { firstSeq: 0xffff_ffce })
    assert.equal(r.played.length, 100)
    assert.equal(r.played[50], 0)
    assert.equal(seqDiff(0, 0xffff_ffff), 1)
  })
})

describe('voice socket messages', () => {
  it('our frame: [0x01][seq][ts][level][opus]', () => {
    const b = encodeOwnFrame({ seq: 0x01020304, ts: 0xa0b0c0d0, level: 300, data: new Uint8Array([9, 8, 7]) })
    assert.deepEqual([...b], [1, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0, 255, 9, 8, 7])
    assert.equal(b.length, OWN_HEADER_BYTES + 3)
  })

  it('an Opus packet over MAX_VOICE_PAYLOAD_BYTES is refused with VoiceWireError', () => {
    assert.throws(() => encodeOwnFrame({ seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_PAYLOAD_BYTES + 1) }), { name: 'VoiceWireError' })
    assert.equal(encodeOwnFrame({ seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_PAYLOAD_BYTES) }).length, OWN_HEADER_BYTES + MAX_VOICE_PAYLOAD_BYTES)
  })

  it('a heard frame round-trips; anything malformed is a VoiceWireError, never a throw', () => {
    fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 60 }), fc.nat(), fc.nat(), fc.nat({ max: 255 }), fc.uint8Array({ maxLength: 64 }), (did, seq, ts, level, data) => {
      const d = new TextEncoder().encode(did)
      if (d.length > 255) return
      const own = encodeOwnFrame({ seq, ts, level, data })
      const msg = new Uint8Array(2 + d.length + own.length - 1)
      msg[0] = 1
      msg[1] = d.length
      msg.set(d, 2)
      msg.set(own.subarray(1), 2 + d.length)
      const f = decodeHeardFrame(msg.buffer)
      assert.ok(!(f instanceof Error))
      assert.deepEqual({ ...f, data: [...f.data] }, { did, seq: seq >>> 0, ts: ts >>> 0, level, data: [...data] })
    }), { seed: 17 })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), bytes => {
      const f = decodeHeardFrame(bytes.slice().buffer)
      if (f instanceof Error) assert.ok(f instanceof VoiceWireError)
    }), { seed: 18 })
    for (const bad of [[], [2, 1, 65], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 5, 65]]) {
      assert.ok(decodeHeardFrame(new Uint8Array(bad).buffer) instanceof VoiceWireError, `refuses ${bad}`)
    }
  })
})

describe('idle speakers', () => {
  it(`a speaker with no frame for SPEAKER_IDLE_MS (${SPEAKER_IDLE_MS} ms) is closed and let go; one heard within it stays`, () => {
    const closed: string[] = []
    const make = (did: string, lastArrival: number): { lastArrival: number, close: () => void } => ({ lastArrival, close: () => { closed.push(did) } })
    const now = 1_000_000
    const speakers = new Map([['quiet', make('quiet', now - SPEAKER_IDLE_MS)], ['talking', make('talking', now - SPEAKER_IDLE_MS + 1)], ['never', make('never', -Infinity)]])
    assert.deepEqual(dropIdleSpeakers(speakers, now).sort(), ['never', 'quiet'])
    assert.deepEqual(closed.sort(), ['never', 'quiet'], 'their decoders and nodes are freed')
    assert.deepEqual([...speakers.keys()], ['talking'])
    assert.deepEqual(dropIdleSpeakers(speakers, now + 1), ['talking'])
    assert.equal(speakers.size, 0)
  })
})
