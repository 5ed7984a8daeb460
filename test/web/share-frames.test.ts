/**
 * The client's putting together of a board's chunks (web/src/share/frames.ts, pure, no browser):
 * frames complete in order, lost ones given up past MAX_PENDING_FRAMES, and a sharer that starts
 * counting again (its page or peer restarted) is followed rather than dropped as old.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { FrameAssembler, MAX_PENDING_FRAMES, SEQ_RESET_GAP, type Assembled } from '../../web/src/share/frames.ts'
import * as clientWire from '../../web/src/share/wire.ts'
import type { Chunk } from '../../web/src/share/wire.ts'
import * as peer from '../../src/voice/index.ts'

/** The chunks of frame `seq` (three of them; a keyframe every 10). */
const chunks = (seq: number, key = seq % 10 === 1): Chunk[] => [0, 1, 2].map(index => ({ seq, ts: seq * 80, key, index, count: 3, data: Uint8Array.of(seq & 0xff, index) }))

function feed (a: FrameAssembler, list: Chunk[]): Assembled[] {
  const out: Assembled[] = []
  for (const c of list) { const f = a.take(c); if (f != null) out.push(f) }
  return out
}

describe('putting a board\'s frames together', () => {
  it('frames come out whole and in order; a frame lost shows as a gap', () => {
    const a = new FrameAssembler()
    const got = feed(a, [...chunks(1), ...chunks(2), ...chunks(4)])
    assert.deepEqual(got.map(f => [f.seq, f.gap]), [[1, true], [2, false], [4, true]])
    assert.deepEqual([...got[1].data], [2, 0, 2, 1, 2, 2])
  })

  it(`a sharer that starts again at seq 1 (${SEQ_RESET_GAP} or more behind) is followed from its keyframe; a small step back is dropped as old`, () => {
    const a = new FrameAssembler()
    const first = feed(a, Array.from({ length: 40 }, (_, i) => chunks(i + 1)).flat())
    assert.equal(first.length, 40)
    assert.deepEqual(feed(a, chunks(40 - SEQ_RESET_GAP + 1)), [], 'a step back under SEQ_RESET_GAP is old')
    const again = feed(a, Array.from({ length: 5 }, (_, i) => chunks(i + 1)).flat())
    assert.deepEqual(again.map(f => f.seq), [1, 2, 3, 4, 5], 'the new run is followed')
    assert.equal(again[0].key, true)
    assert.equal(again[0].gap, true, 'the decoder starts over from the keyframe')
    assert.equal(a.resets, 1)
  })

  it(`at most MAX_PENDING_FRAMES (${MAX_PENDING_FRAMES}) frames wait for their chunks; older ones are given up`, () => {
    const a = new FrameAssembler()
    const partial = Array.from({ length: MAX_PENDING_FRAMES + 2 }, (_, i) => chunks(i + 1)[0])
    assert.deepEqual(feed(a, partial), [])
    assert.equal(a.lost, 2)
  })
})

describe('one set of video limits', () => {
  it('the client encodes within the limits the peer carries (one file for both)', () => {
    for (const name of ['VIDEO_MAX_FPS', 'VIDEO_MAX_BITRATE', 'VIDEO_MAX_WIDTH', 'VIDEO_MAX_HEIGHT', 'MAX_VIDEO_CHUNK_BYTES', 'MAX_VIDEO_FRAME_BYTES'] as const) {
      assert.equal(clientWire[name], peer[name], name)
    }
    // The chunks a second the client's largest stream needs stay under what a peer takes from one member.
    assert.ok(clientWire.VIDEO_MAX_BITRATE / 8 / clientWire.MAX_VIDEO_CHUNK_BYTES + clientWire.VIDEO_MAX_FPS <= peer.OWN_VIDEO_CHUNKS_PER_SECOND)
  })
})
