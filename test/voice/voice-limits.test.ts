/**
 * The voice service's limits alone (a unit test of src/voice, its ports faked, its streams real
 * in-memory libp2p stream pairs): the frame budget of a peer in a space, shared by all its streams
 * and not refilled by opening another; and the sealing of a private space's audio under a
 * per-speaker key with its own counter, so voice spends none of the group key's message budget.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { encodeWant, MAX_VOICE_STREAMS_PER_PEER, VOICE_FRAMES_PER_SECOND, type VoiceMember } from '../../src/voice/index.ts'
import { didOf, keyOf, serviceAtOrigin } from '../helpers/voice.ts'

/** Polls `cond` until it holds or `ms` pass. */
async function until (cond: () => boolean, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!cond() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  return cond()
}

describe('the frame budget of a peer', { timeout: 60_000 }, () => {
  // Each stream alone stays under VOICE_FRAMES_PER_SECOND; together they are far past it.
  const perStream = Math.floor(VOICE_FRAMES_PER_SECOND * 0.9)

  it(`MAX_VOICE_STREAMS_PER_PEER (${MAX_VOICE_STREAMS_PER_PEER}) streams of one peer share one budget of VOICE_FRAMES_PER_SECOND (${VOICE_FRAMES_PER_SECOND})`, async () => {
    const key = keyOf(301)
    const members: VoiceMember[] = [{ did: didOf(key), peer: 'peer-m', position: [1, 0, 0], near: true }]
    const u = await serviceAtOrigin(keyOf(300), members)
    const streams: Stream[] = []
    try {
      const opened = []
      for (let i = 0; i < MAX_VOICE_STREAMS_PER_PEER; i++) {
        const o = await u.open(key, 'peer-m')
        streams.push(o.stream)
        opened.push(o)
      }
      for (const o of opened) {
        try { for (let i = 0; i < perStream; i++) await o.f.write(encodeWant(false)) } catch {}
      }
      assert.ok(await until(() => u.rejected.includes('VoiceRateLimitError')), `the peer is refused past its budget (${JSON.stringify(u.rejected)})`)
      assert.ok(u.service.state('space-under-test').dropped.rate >= 1)
    } finally {
      await u.service.stop()
      for (const s of streams) s.abort(new Error('done'))
    }
  })

  it('a stream opened again after another closed does not start with a fresh budget', async () => {
    const key = keyOf(311)
    const members: VoiceMember[] = [{ did: didOf(key), peer: 'peer-m', position: [1, 0, 0], near: true }]
    const u = await serviceAtOrigin(keyOf(310), members)
    const streams: Stream[] = []
    try {
      for (let round = 0; round < 4 && !u.rejected.includes('VoiceRateLimitError'); round++) {
        const o = await u.open(key, 'peer-m')
        streams.push(o.stream)
        try { for (let i = 0; i < perStream; i++) await o.f.write(encodeWant(false)) } catch {}
        await o.stream.close().catch(() => {})
      }
      assert.ok(await until(() => u.rejected.includes('VoiceRateLimitError')), `the peer is refused past its budget (${JSON.stringify(u.rejected)})`)
    } finally {
      await u.service.stop()
      for (const s of streams) s.abort(new Error('done'))
    }
  })
})
