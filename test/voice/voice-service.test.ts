/**
 * The voice service alone (a unit test of src/voice with its ports faked): a speaker with more
 * listeners asking for its audio than MAX_VOICE_LISTENERS sends to that many and no more. The
 * streams are real in-memory libp2p stream pairs; the space view and the protocol port are fakes,
 * since 33 member peers are more than this machine runs at once.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { createPeerBinding } from '../../src/identity/binding.ts'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { framed } from '../../src/net/framed.ts'
import type { ProtocolHandler, ProtocolPort } from '../../src/net/ports.ts'
import { Store } from '../../src/store/store.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { fakeProtocols, keyOf, serviceAtOrigin, UNIT_SPACE } from '../helpers/voice.ts'
import { defaultConfig, mergeConfig, validateConfig } from '../../src/node/config.ts'
import { decodeVoiceFrame, encodeOpen, encodeTalking, encodeWant, HEARING_RANGE_M, MAX_QUEUED_AUDIO_FRAMES, TALKING_NOTE_MIN_GAP_MS, MAX_VOICE_LISTENERS, MAX_VOICE_READ_BYTES, voice, type VoiceMember } from '../../src/voice/index.ts'

const SPACE = UNIT_SPACE

describe('the voice service alone', { timeout: 60_000 }, () => {
  it(`sends to MAX_VOICE_LISTENERS (${MAX_VOICE_LISTENERS}) listeners that want it, not to one more`, async () => {
    const n = MAX_VOICE_LISTENERS + 2
    const myKey = keyOf(200)
    const members: VoiceMember[] = Array.from({ length: n }, (_, i) => ({ did: didFromPublicKey(keyOf(i).publicKey), peer: `peer-${i}`, position: [i / 2, 0, 0], near: true }))
    let handler: ProtocolHandler | undefined
    const protocols = {
      peerId: 'peer-me',
      addresses: () => [],
      handle: async (_p: string, h: ProtocolHandler) => { handler = h },
      unhandle: async () => {},
      dial: async () => { throw new Error('no dialling in this test') },
      peers: () => [],
      connections: () => [],
      hangUp: async () => {},
      onPeer: () => () => {}
    } satisfies ProtocolPort
    const rejected: string[] = []
    const service = voice()({
      protocols,
      onRejected: (_peer, _protocol, err) => { rejected.push(err.name) },
      identity: { did: didFromPublicKey(myKey.publicKey), key: myKey, binding: (await createPeerBinding(myKey, 'peer-me')).bytes },
      spaces: {
        isJoined: id => id === SPACE,
        who: () => members,
        me: () => ({ position: [0, 0, 0] }),
        isExcluded: () => false,
        isOwnerMuted: () => false,
        cipher: () => undefined
      },
      social: { isBlocked: () => false, isMuted: () => false }
    })
    await service.start()
    await service.start()
    const ours: Array<{ stream: Stream, f: ReturnType<typeof framed> }> = []
    try {
      for (let i = 0; i < n; i++) {
        const [local, remote] = await streamPair()
        assert.ok(handler != null)
        handler(remote, { peer: `peer-${i}`, address: '/memory/test', limited: false })
        const f = framed(local, { maxFrameBytes: MAX_VOICE_READ_BYTES })
        await f.write(encodeOpen(SPACE, (await createPeerBinding(keyOf(i), `peer-${i}`)).bytes))
        assert.ok(await f.read({ signal: AbortSignal.timeout(10_000) }) != null, 'the service answers the opening')
        await f.write(encodeWant(true))
        ours.push({ stream: local, f })
      }
      // Each WANT is taken in order of the streams; the service then sends one frame.
      const frames = Array.from({ length: n }, () => [] as string[])
      const audioOn = new Set<number>()
      const reading = ours.map(async ({ f }, i) => {
        try {
          for await (const bytes of f.frames()) {
            const t = decodeVoiceFrame(bytes).type
            frames[i].push(t)
            if (t === 'audio') audioOn.add(i)
          }
        } catch {}
      })
      // The WANTs are in flight: send until the service has taken them all (audio reaches the first 32).
      let seq = 0
      const deadline = Date.now() + 20_000
      while (audioOn.size < MAX_VOICE_LISTENERS && Date.now() < deadline) {
        service.send(SPACE, { seq: ++seq, ts: seq, level: 50, data: new Uint8Array(40).fill(seq) })
        await new Promise(resolve => setTimeout(resolve, 30))
      }
      assert.equal(audioOn.size, MAX_VOICE_LISTENERS)
      // One more frame now that every WANT is in: still no more than the bound.
      service.send(SPACE, { seq: ++seq, ts: seq, level: 50, data: new Uint8Array(40) })
      await service.stop()
      await service.stop()
      await Promise.all(reading)
      assert.equal(audioOn.size, MAX_VOICE_LISTENERS, `audio reached ${audioOn.size} listeners`)
      for (let i = 0; i < n; i++) assert.ok(frames[i].includes('talking'), 'every near member with a stream hears the talking note')
      assert.deepEqual(rejected, [])
    } finally {
      await service.stop()
      for (const o of ours) o.stream.abort(new Error('done'))
    }
  })

  it(`a burst of our own frames queues MAX_QUEUED_AUDIO_FRAMES (${MAX_QUEUED_AUDIO_FRAMES}) on a listener's stream and drops the rest`, async () => {
    const myKey = keyOf(210)
    const listenerKey = keyOf(211)
    const members: VoiceMember[] = [{ did: didFromPublicKey(listenerKey.publicKey), peer: 'peer-l', position: [1, 0, 0], near: true }]
    const { service, handler: handled } = await serviceAtOrigin(myKey, members)
    const handler: ProtocolHandler | undefined = handled()
    const [local, remote] = await streamPair()
    try {
      assert.ok(handler != null)
      handler(remote, { peer: 'peer-l', address: '/memory/test', limited: false })
      const f = framed(local, { maxFrameBytes: MAX_VOICE_READ_BYTES })
      await f.write(encodeOpen(SPACE, (await createPeerBinding(listenerKey, 'peer-l')).bytes))
      assert.ok(await f.read({ signal: AbortSignal.timeout(10_000) }) != null, 'the service answers the opening')
      await f.write(encodeWant(true))
      const seqs: number[] = []
      const reading = (async () => {
        try {
          for await (const bytes of f.frames()) {
            const frame = decodeVoiceFrame(bytes)
            if (frame.type === 'audio') seqs.push(frame.seq)
          }
        } catch {}
      })()
      // Until the WANT is in, one frame at a time; then a burst in one tick, of more than the queue holds.
      let seq = 0
      const deadline = Date.now() + 20_000
      while (seqs.length === 0 && Date.now() < deadline) {
        service.send(SPACE, { seq: ++seq, ts: seq, level: 50, data: new Uint8Array(40) })
        await new Promise(resolve => setTimeout(resolve, 30))
      }
      assert.ok(seqs.length > 0, 'the listener receives once its WANT is in')
      await new Promise(resolve => setTimeout(resolve, 100))
      const before = seqs.length
      const first = seq + 1
      for (let i = 0; i < MAX_QUEUED_AUDIO_FRAMES + 5; i++) service.send(SPACE, { seq: ++seq, ts: seq, level: 50, data: new Uint8Array(40) })
      // A fence: a frame sent once the queue has drained arrives after every frame queued before it.
      const fence = seq + 1
      const fenceBy = Date.now() + 20_000
      while (!seqs.includes(fence) && Date.now() < fenceBy) {
        if (seq < fence && seqs.length - before >= MAX_QUEUED_AUDIO_FRAMES) service.send(SPACE, { seq: ++seq, ts: seq, level: 50, data: new Uint8Array(40) })
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      assert.ok(seqs.includes(fence), 'the fence frame arrives')
      await service.stop()
      await reading
      const burst = seqs.slice(before, seqs.indexOf(fence))
      assert.deepEqual(burst, Array.from({ length: MAX_QUEUED_AUDIO_FRAMES }, (_, i) => first + i), 'the first frames of the burst, in order, as many as the queue holds')
    } finally {
      await service.stop()
      local.abort(new Error('done'))
    }
  })

  it(`a member beyond HEARING_RANGE_M (${HEARING_RANGE_M} m) who asks for our audio gets none; one within gets it; TALKING notes closer than TALKING_NOTE_MIN_GAP_MS are dropped as 'rate'`, async () => {
    const myKey = keyOf(220)
    const nearKey = keyOf(221)
    const farKey = keyOf(222)
    const members: VoiceMember[] = [
      { did: didFromPublicKey(nearKey.publicKey), peer: 'peer-near', position: [5, 0, 0], near: true },
      { did: didFromPublicKey(farKey.publicKey), peer: 'peer-far', position: [HEARING_RANGE_M + 20, 0, 0], near: true }
    ]
    const { service, handler: handled } = await serviceAtOrigin(myKey, members)
    const handler: ProtocolHandler | undefined = handled()
    const streams: Stream[] = []
    try {
      const audio = { near: 0, far: 0 }
      const open = async (key: ReturnType<typeof keyOf>, peer: string, name: 'near' | 'far'): Promise<ReturnType<typeof framed>> => {
        const [local, remote] = await streamPair()
        streams.push(local)
        assert.ok(handler != null)
        handler(remote, { peer, address: '/memory/test', limited: false })
        const f = framed(local, { maxFrameBytes: MAX_VOICE_READ_BYTES })
        await f.write(encodeOpen(SPACE, (await createPeerBinding(key, peer)).bytes))
        assert.ok(await f.read({ signal: AbortSignal.timeout(10_000) }) != null, 'the service answers the opening')
        await f.write(encodeWant(true))
        void (async () => {
          try { for await (const bytes of f.frames()) if (decodeVoiceFrame(bytes).type === 'audio') audio[name]++ } catch {}
        })()
        return f
      }
      const far = await open(farKey, 'peer-far', 'far')
      await open(nearKey, 'peer-near', 'near')
      let seq = 0
      const deadline = Date.now() + 20_000
      while (audio.near < 20 && Date.now() < deadline) {
        service.send(SPACE, { seq: ++seq, ts: seq, level: 50, data: new Uint8Array(40) })
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      assert.ok(audio.near >= 20, `the member within range receives (${audio.near} frames)`)
      assert.equal(audio.far, 0, 'the member beyond range, who asked too, receives nothing')
      // Two notes at once from the far member: the second is within TALKING_NOTE_MIN_GAP_MS of the first.
      const before = service.state(SPACE).dropped.rate
      await far.write(encodeTalking(90))
      await far.write(encodeTalking(91))
      const by = Date.now() + 10_000
      while (service.state(SPACE).dropped.rate === before && Date.now() < by) await new Promise(resolve => setTimeout(resolve, 20))
      assert.equal(service.state(SPACE).dropped.rate, before + 1, `a note ${TALKING_NOTE_MIN_GAP_MS} ms after the last is dropped as rate`)
    } finally {
      await service.stop()
      for (const st of streams) st.abort(new Error('done'))
    }
  })

  it('the voice settings are checked: maxHeard past MAX_VOICE_LISTENERS, a range that is not positive', () => {
    const base = defaultConfig('/nonexistent')
    assert.equal(validateConfig(mergeConfig(base, { voice: { maxHeard: MAX_VOICE_LISTENERS, rangeM: 12.5 } })).voice.maxHeard, MAX_VOICE_LISTENERS)
    assert.throws(() => validateConfig(mergeConfig(base, { voice: { maxHeard: MAX_VOICE_LISTENERS + 1 } })), { name: 'ConfigError', message: /voice.maxHeard/ })
    assert.throws(() => validateConfig(mergeConfig(base, { voice: { maxHeard: 1.5 } })), { name: 'ConfigError', message: /voice.maxHeard/ })
    assert.throws(() => validateConfig(mergeConfig(base, { voice: { rangeM: 0 } })), { name: 'ConfigError', message: /voice.rangeM/ })
    assert.throws(() => voice({ maxHeard: -1 })({} as never), { name: 'RangeError' })
  })

  it('personal voice mutes are kept in the store across a restart', async (t: TestContext) => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'voice-store')
    const key = keyOf(201)
    const make = async (store: Store): Promise<ReturnType<ReturnType<typeof voice>>> => voice()({
      protocols: fakeProtocols(),
      onRejected: () => {},
      identity: { did: didFromPublicKey(key.publicKey), key, binding: (await createPeerBinding(key, 'peer-me')).bytes },
      spaces: { isJoined: () => true, who: () => [], me: () => ({ position: [0, 0, 0] }), isExcluded: () => false, isOwnerMuted: () => false, cipher: () => undefined },
      social: { isBlocked: () => false, isMuted: () => false },
      store: store.sublevel('voice')
    })
    let store = await Store.open(dir)
    defer(async () => { await store.close() })
    const first = await make(store)
    await first.start()
    await first.setVoiceMuted(SPACE, 'did:key:zLoud', true)
    await first.setVoiceMuted(undefined, 'did:key:zEverywhere', true)
    await first.setVoiceMuted(SPACE, 'did:key:zForgiven', true)
    await first.setVoiceMuted(SPACE, 'did:key:zForgiven', false)
    await first.stop()
    await store.close()
    store = await Store.open(dir)
    const second = await make(store)
    await second.start()
    assert.equal(second.isVoiceMuted(SPACE, 'did:key:zLoud'), true)
    assert.equal(second.isVoiceMuted('another-space', 'did:key:zLoud'), false)
    assert.equal(second.isVoiceMuted('another-space', 'did:key:zEverywhere'), true)
    assert.equal(second.isVoiceMuted(SPACE, 'did:key:zForgiven'), false)
    await second.stop()
  })
})
