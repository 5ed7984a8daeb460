/**
 * The voice benchmark's light speakers (bench/voice-speakers.ts) against a real listener: a
 * speaker is its own libp2p peer with a seeded identity, joins a space a full node holds, and the
 * node hears its audio over the real voice protocol, the bytes it sent and nothing else.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { joinAt, speakerKeys, startSpeaker } from '../../bench/voice-speakers.ts'
import { Store } from '../../src/store/store.ts'
import type { VoiceFrameEvent } from '../../src/voice/index.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { LocalPeers } from '../helpers/local-peers.ts'

const DEADLINE_MS = 60_000

describe('voice benchmark speakers', () => {
  it('a light speaker joins a full node\'s space with its seeded identity, and the node hears its frames', async t => {
    const defer = cleanups(t)
    const peers = new LocalPeers('voice-speakers')
    defer(async () => { await peers.stop() })
    const dir = await tempDir(defer, 'voice-speakers')
    const store = await Store.open(join(dir, 'speakers'), { ballastBytes: 0 })
    defer(async () => { await store.close() })

    const listener = await peers.startNode()
    const created = await listener.space.create({ name: 'speakers' })
    listener.space.move(created.id, [0, 0, 0])
    listener.voice.listen(created.id)
    const frames: VoiceFrameEvent[] = []
    listener.voice.addEventListener('voice:frame', evt => { frames.push(evt.detail) })

    const speaker = await startSpeaker(7, store)
    defer(async () => { await speaker.stop() })
    assert.equal((await speakerKeys(7)).did, speaker.did, 'the same seed gives the same identity')
    assert.notEqual((await speakerKeys(8)).did, speaker.did)
    assert.notEqual(speaker.did, listener.did)

    await joinAt(speaker, created.id, [listener.net.getMultiaddrs()[0].toString()], [3, 0, 0], 'speaker 7')
    assert.ok(speaker.space.isJoined(created.id))

    const packet = Uint8Array.from({ length: 100 }, (_, i) => (i * 13) & 255)
    const deadline = Date.now() + DEADLINE_MS
    let seq = 0
    while (!frames.some(f => f.did === speaker.did)) {
      if (Date.now() > deadline) assert.fail(`the listener heard no frame of the speaker in ${DEADLINE_MS} ms (state ${JSON.stringify(listener.voice.state(created.id))})`)
      speaker.voice.send(created.id, { seq: seq++, ts: Date.now() >>> 0, level: 60, data: packet })
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    const heard = frames.filter(f => f.did === speaker.did)
    assert.deepEqual(Uint8Array.from(heard[0].data), packet)
    assert.ok(heard.every(f => f.space === created.id && f.seq < seq))
    assert.deepEqual(frames.filter(f => f.did !== speaker.did), [])
  })
})
