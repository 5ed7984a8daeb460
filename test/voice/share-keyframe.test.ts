/**
 * Keyframe requests alone (a unit test of src/voice, its ports faked, its streams real in-memory
 * libp2p stream pairs): a viewer's peer asks the sharer of the board it views for a keyframe, a
 * sharer's peer passes a request (and a new viewer) on to its client as 'voice:keyframe', and both
 * are bounded by KEYFRAME_REQUEST_MIN_MS; a request from a member that does not watch is dropped.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import {
  decodeVoiceFrame, encodeKeyframe, encodeShare, encodeWantVideo, KEYFRAME_REQUEST_MIN_MS, type VoiceMember
} from '../../src/voice/index.ts'
import { didOf, keyOf, serviceAtOrigin, UNIT_SPACE } from '../helpers/voice.ts'

async function until (cond: () => boolean, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!cond() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  return cond()
}

describe('keyframe requests', { timeout: 60_000 }, () => {
  it(`a sharer's peer tells its client of a new viewer and of KEYFRAME requests, at most every KEYFRAME_REQUEST_MIN_MS (${KEYFRAME_REQUEST_MIN_MS} ms)`, async () => {
    const viewer = keyOf(341)
    const other = keyOf(342)
    const members: VoiceMember[] = [
      { did: didOf(viewer), peer: 'peer-v', position: [1, 0, 0], near: true },
      { did: didOf(other), peer: 'peer-o', position: [0, 0, 1], near: true }
    ]
    const u = await serviceAtOrigin(keyOf(340), members)
    const streams: Stream[] = []
    let asked = 0
    u.service.addEventListener('voice:keyframe', () => { asked++ })
    try {
      u.service.share(UNIT_SPACE, true, [2, 1, 0])
      const v = await u.open(viewer, 'peer-v')
      const o = await u.open(other, 'peer-o')
      streams.push(v.stream, o.stream)
      const started = Date.now()
      await v.f.write(encodeWantVideo(true))
      assert.ok(await until(() => asked === 1), 'a new viewer: the client is asked for a keyframe')
      const before = u.service.state(UNIT_SPACE).dropped
      const n = 20
      for (let i = 0; i < n; i++) await v.f.write(encodeKeyframe())
      await o.f.write(encodeKeyframe())
      assert.ok(await until(() => u.service.state(UNIT_SPACE).dropped.unwanted === before.unwanted + 1), 'a member that does not watch is not heard')
      const elapsed = Date.now() - started
      const most = 1 + Math.ceil(elapsed / KEYFRAME_REQUEST_MIN_MS)
      assert.ok(asked <= most, `${asked} requests reached the client in ${elapsed} ms, at most ${most}`)
      assert.ok(u.service.state(UNIT_SPACE).dropped.rate >= before.rate + n - most, 'the rest are dropped as rate')
    } finally {
      await u.service.stop()
      for (const s of streams) s.abort(new Error('done'))
    }
  })

  it('a viewer\'s peer asks the sharer of the board it views for a keyframe, and not again within KEYFRAME_REQUEST_MIN_MS', async () => {
    const sharer = keyOf(351)
    const members: VoiceMember[] = [{ did: didOf(sharer), peer: 'peer-s', position: [1, 0, 0], near: true }]
    const u = await serviceAtOrigin(keyOf(350), members)
    const streams: Stream[] = []
    try {
      u.service.watch(UNIT_SPACE)
      const s = await u.open(sharer, 'peer-s')
      streams.push(s.stream)
      const got: string[] = []
      void (async () => { try { for await (const b of s.f.frames()) got.push(decodeVoiceFrame(b).type) } catch {} })()
      assert.equal(u.service.requestKeyframe(UNIT_SPACE, didOf(sharer)), false, 'no board viewed yet')
      await s.f.write(encodeShare(true, [2, 1, 0]))
      assert.ok(await until(() => got.includes('want-video')), 'the viewer asks for the board\'s video')
      const at = Date.now()
      assert.equal(u.service.requestKeyframe(UNIT_SPACE, didOf(sharer)), true)
      const again = u.service.requestKeyframe(UNIT_SPACE, didOf(sharer))
      if (Date.now() - at < KEYFRAME_REQUEST_MIN_MS) assert.equal(again, false, 'not again so soon')
      assert.ok(await until(() => got.includes('keyframe')), 'the sharer gets KEYFRAME')
    } finally {
      await u.service.stop()
      for (const st of streams) st.abort(new Error('done'))
    }
  })
})
