/**
 * The voice service's limits alone (a unit test of src/voice, its ports faked, its streams real
 * in-memory libp2p stream pairs): the frame budget of a peer in a space, shared by all its streams
 * and not refilled by opening another; and the sealing of a private space's audio under a
 * per-speaker key with its own counter, so voice spends none of the group key's message budget.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import {
  audioAad, decodeVoiceFrame, encodeWant, encodeWantVideo, MAX_SEALS_PER_VOICE_KEY, MAX_VIDEO_CHUNK_BYTES, MAX_VOICE_STREAMS_PER_PEER, VOICE_FRAMES_PER_SECOND, VoiceSeal, type VoiceCipher, type VoiceMember
} from '../../src/voice/index.ts'
import { didOf, keyOf, serviceAtOrigin, UNIT_SPACE } from '../helpers/voice.ts'

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

describe('sealing in a private space', { timeout: 60_000 }, () => {
  const groupKeys = (epoch: { n: number }): VoiceCipher => ({ epoch: () => epoch.n, key: e => e >= 1 && e <= epoch.n ? new Uint8Array(32).fill(e) : undefined })
  const header = (sealed: Uint8Array): { version: number, epoch: number, salt: string, counter: bigint } => {
    const v = new DataView(sealed.buffer, sealed.byteOffset, sealed.byteLength)
    return { version: sealed[0], epoch: v.getUint32(1), salt: Buffer.from(sealed.subarray(5, 21)).toString('hex'), counter: v.getBigUint64(21) }
  }

  it('a speaker seals under its own key with a counter nonce: one salt, counters 0, 1, 2…; a new epoch takes a new key', async () => {
    const key = keyOf(321)
    const members: VoiceMember[] = [{ did: didOf(key), peer: 'peer-l', position: [1, 0, 0], near: true }]
    const epoch = { n: 1 }
    const cipher = groupKeys(epoch)
    const u = await serviceAtOrigin(keyOf(320), members, { cipher })
    const me = didOf(keyOf(320))
    const streams: Stream[] = []
    try {
      const o = await u.open(key, 'peer-l')
      streams.push(o.stream)
      await o.f.write(encodeWant(true))
      const audio: Array<{ seq: number, payload: Uint8Array }> = []
      void (async () => {
        try { for await (const b of o.f.frames()) { const f = decodeVoiceFrame(b, 1024); if (f.type === 'audio') audio.push({ seq: f.seq, payload: Uint8Array.from(f.payload) }) } } catch {}
      })()
      let seq = 0
      const opus = new Uint8Array(60).fill(7)
      while (audio.length < 5 && seq < 1000) { u.service.send(UNIT_SPACE, { seq: ++seq, ts: seq, level: 9, data: opus }); await until(() => false, 20) }
      assert.ok(audio.length >= 5, 'the listener receives')
      const first = audio.slice(0, 5).map(a => header(a.payload))
      assert.ok(first.every(h => h.version === 1 && h.epoch === 1 && h.salt === first[0].salt), 'one key (salt) in the epoch')
      for (let i = 1; i < first.length; i++) assert.equal(first[i].counter, first[i - 1].counter + 1n, 'the nonce counts up')
      const seal = new VoiceSeal()
      for (const a of audio) assert.deepEqual(Uint8Array.from(seal.open(UNIT_SPACE, me, cipher, a.payload, audioAad(UNIT_SPACE, me, a.seq))), opus)
      epoch.n = 2
      const n = audio.length
      while (audio.length < n + 2 && seq < 2000) { u.service.send(UNIT_SPACE, { seq: ++seq, ts: seq, level: 9, data: opus }); await until(() => false, 20) }
      const later = header(audio[audio.length - 1].payload)
      assert.equal(later.epoch, 2)
      assert.notEqual(later.salt, first[0].salt, 'a new epoch, a new key')
    } finally {
      await u.service.stop()
      for (const s of streams) s.abort(new Error('done'))
    }
  })

  it(`past MAX_SEALS_PER_VOICE_KEY (${MAX_SEALS_PER_VOICE_KEY}) seals a sender draws a new key by itself; a tampered header or another did does not open`, () => {
    const cipher = groupKeys({ n: 1 })
    const limit = 3
    const seal = new VoiceSeal(limit)
    const salts = new Set<string>()
    const sealed: Uint8Array[] = []
    for (let i = 0; i < 2 * limit + 1; i++) {
      const s = seal.seal('sp', 'did:me', cipher, Uint8Array.of(i), audioAad('sp', 'did:me', i))
      sealed.push(s)
      salts.add(header(s).salt)
      assert.equal(header(s).counter, BigInt(i % limit))
    }
    assert.equal(salts.size, 3, 'a new salt every MAX_SEALS_PER_VOICE_KEY seals')
    const other = new VoiceSeal()
    sealed.forEach((s, i) => { assert.deepEqual(Uint8Array.from(other.open('sp', 'did:me', cipher, s, audioAad('sp', 'did:me', i))), Uint8Array.of(i)) })
    const tampered = Uint8Array.from(sealed[0])
    tampered[22] ^= 1
    assert.throws(() => other.open('sp', 'did:me', cipher, tampered, audioAad('sp', 'did:me', 0)), { name: 'VoiceOpenError' })
    assert.throws(() => other.open('sp', 'did:other', cipher, sealed[0], audioAad('sp', 'did:other', 0)), { name: 'VoiceOpenError' })
    assert.throws(() => new VoiceSeal().open('sp', 'did:me', groupKeys({ n: 0 }), sealed[0], audioAad('sp', 'did:me', 0)), { name: 'VoiceOpenError' })
    assert.throws(() => seal.seal('sp', 'did:me', groupKeys({ n: 0 }), Uint8Array.of(1), new Uint8Array(0)), { name: 'VoiceSealError' })
    assert.ok(MAX_SEALS_PER_VOICE_KEY <= Number.MAX_SAFE_INTEGER)
  })
})

describe('audio before video', { timeout: 60_000 }, () => {
  it('with a keyframe\'s chunks waiting on a stream, an audio frame sent after them goes out before all but the chunk being written', async () => {
    const key = keyOf(331)
    const members: VoiceMember[] = [{ did: didOf(key), peer: 'peer-l', position: [1, 0, 0], near: true }]
    const u = await serviceAtOrigin(keyOf(330), members)
    const streams: Stream[] = []
    try {
      const o = await u.open(key, 'peer-l')
      streams.push(o.stream)
      await o.f.write(encodeWant(true))
      await o.f.write(encodeWantVideo(true))
      const got: Array<{ type: string, seq: number }> = []
      void (async () => {
        try { for await (const b of o.f.frames()) { const f = decodeVoiceFrame(b); if (f.type === 'audio' || f.type === 'video') got.push({ type: f.type, seq: f.seq }) } } catch {}
      })()
      u.service.share(UNIT_SPACE, true, [2, 1, 0])
      // Until both WANTs are in: one audio frame and one chunk at a time.
      let seq = 0
      const data = new Uint8Array(MAX_VIDEO_CHUNK_BYTES).fill(3)
      while (!(got.some(g => g.type === 'audio') && got.some(g => g.type === 'video')) && seq < 500) {
        seq++
        u.service.send(UNIT_SPACE, { seq, ts: seq, level: 9, data: new Uint8Array(40) })
        u.service.sendVideo(UNIT_SPACE, { seq, ts: seq, key: true, index: 0, count: 1, data })
        await until(() => false, 30)
      }
      const last = seq
      assert.ok(await until(() => got.some(g => g.type === 'audio' && g.seq === last) && got.some(g => g.type === 'video' && g.seq === last)), 'the listener has the last frames of the warm-up')
      const start = got.length
      const chunks = 60
      for (let i = 0; i < chunks; i++) u.service.sendVideo(UNIT_SPACE, { seq: 10_000, ts: 1, key: true, index: i, count: chunks, data })
      u.service.send(UNIT_SPACE, { seq: 20_000, ts: 1, level: 9, data: new Uint8Array(40) })
      assert.ok(await until(() => got.length >= start + chunks + 1), 'every chunk and the audio frame arrive')
      const burst = got.slice(start)
      const at = burst.findIndex(g => g.type === 'audio' && g.seq === 20_000)
      assert.ok(at >= 0 && at <= 1, `the audio frame is written at most after the chunk in flight (it came ${at}th)`)
    } finally {
      await u.service.stop()
      for (const s of streams) s.abort(new Error('done'))
    }
  })
})
