/**
 * Sharing through the local API, between two in-process peers each with its ApiServer: a `ws`
 * client on A's video socket (the voice WebSocket with media=video) shows a board and sends VIDEO
 * chunks; a client on B's video socket gets the board note and the chunks, with A's did, as sent;
 * GET /api/v0/voice shows the board; closing A's socket takes the board down at B; bad client
 * frames on a video socket close it with 1008.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import { ApiServer, createApiToken } from '../../src/api/server.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { spaceTopic } from '../../src/space/index.ts'
import { decodeForClient, encodeAudio, encodeShare, encodeVideo, MAX_VIDEO_CHUNK_BYTES, type VoiceState } from '../../src/voice/index.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seeded } from '../helpers/random.ts'

const STEP_MS = 20_000
const peers = new LocalPeers('share-api')
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })
const sockets: WebSocket[] = []

describe('sharing through the local API', { timeout: 300_000 }, () => {
  let a: PeerverseNode, b: PeerverseNode
  let apiA: ApiServer, apiB: ApiServer
  let tokenA = '', tokenB = ''
  let space = ''

  const videoUrl = (api: ApiServer, token: string): string =>
    `${api.url.replace(/^http/, 'ws')}/api/v0/voice/ws?space=${encodeURIComponent(space)}&media=video&token=${encodeURIComponent(token)}`

  async function open (url: string): Promise<WebSocket> {
    const ws = new WebSocket(url)
    sockets.push(ws)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    return ws
  }

  async function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
    return await new Promise(resolve => { ws.once('close', (code, reason) => { resolve({ code, reason: reason.toString() }) }) })
  }

  before(async () => {
    a = await peers.startNode()
    b = await peers.startNode()
    await a.connect(b.addresses().find(x => x.includes('/tcp/')) as string, { signal: AbortSignal.timeout(STEP_MS) })
    space = (await a.space.create({ name: 'Meeting', displayName: 'a' })).id
    await b.space.join(space, { name: 'b', peers: a.space.link(space).peers })
    await eventually('the space mesh is up', () => a.topicPeers(spaceTopic(space)).length > 0 && b.topicPeers(spaceTopic(space)).length > 0, { timeoutMs: 60_000 })
    a.space.move(space, [100, 0, 100])
    b.space.move(space, [105, 0, 100])
    await eventually('each sees the other near', () => a.space.who(space).some(m => m.did === b.did && m.near) && b.space.who(space).some(m => m.did === a.did && m.near), { timeoutMs: 60_000 })
    tokenA = await createApiToken(a.config.dataDir)
    tokenB = await createApiToken(b.config.dataDir)
    apiA = new ApiServer(a, { token: tokenA, webRoot: null })
    apiB = new ApiServer(b, { token: tokenB, webRoot: null })
    await apiA.start()
    await apiB.start()
  })

  after(async () => {
    for (const ws of sockets) ws.terminate()
    await apiA?.stop()
    await apiB?.stop()
    await peers.stop()
  })

  it('a board and its chunks from a client on A reach a client on B; closing A\'s socket takes the board down', async () => {
    const viewer = await open(videoUrl(apiB, tokenB))
    const got: Array<ReturnType<typeof decodeForClient>> = []
    viewer.on('message', (data, isBinary) => { if (isBinary) got.push(decodeForClient(new Uint8Array(data as Buffer))) })
    const sharer = await open(videoUrl(apiA, tokenA))
    let keyframesAsked = 0
    sharer.on('message', (data, isBinary) => { if (isBinary && (data as Buffer).length === 1 && (data as Buffer)[0] === 0x07) keyframesAsked++ })
    sharer.send(encodeShare(true, [102, 1.6, 100]))
    const random = seeded(9)
    const sent = new Map<string, Uint8Array>()
    let seq = 0
    const timer = setInterval(() => {
      seq++
      for (let index = 0; index < 2; index++) {
        const data = random.bytes(index === 0 ? MAX_VIDEO_CHUNK_BYTES : 300)
        sent.set(`${seq}/${index}`, data)
        sharer.send(encodeVideo({ seq, ts: seq * 80, key: seq === 1, index, count: 2, data }))
      }
    }, 80)
    try {
      await eventually('B\'s client gets the board and 20 chunks', () => got.some(g => g.frame.type === 'share') && got.filter(g => g.frame.type === 'video').length >= 20)
      for (const { did, frame } of got) {
        assert.equal(did, a.did)
        if (frame.type === 'share') assert.deepEqual([frame.on, frame.position.map(Math.round)], [true, [102, 2, 100]])
        else if (frame.type === 'video') assert.deepEqual(Uint8Array.from(frame.payload), sent.get(`${frame.seq}/${frame.index}`))
      }
      const res = await fetch(`${apiB.url}/api/v0/voice?space=${encodeURIComponent(space)}`, { headers: { authorization: `Bearer ${tokenB}` } })
      const state = await res.json() as VoiceState
      assert.equal(state.share.watching, true)
      assert.deepEqual(state.share.boards.map(x => [x.did, x.viewing]), [[a.did, true]])
      // B's client asks A's board for a keyframe: A's client is asked for one (the peers pass at most one a KEYFRAME_REQUEST_MIN_MS).
      const asked = keyframesAsked
      const didBytes = Buffer.from(a.did)
      const ask = Uint8Array.from([0x07, didBytes.length, ...didBytes])
      await eventually('A\'s client is asked for a keyframe', () => keyframesAsked > asked, { trigger: async () => { viewer.send(ask) } })
    } finally {
      clearInterval(timer)
    }
    const done = closed(sharer)
    sharer.close()
    await done
    await eventually('B\'s client is told the board is down', () => got.some(g => g.frame.type === 'share' && !g.frame.on))
    await eventually('B knows no board', () => b.voice.boards(space).boards.length === 0)
    viewer.close()
  })

  it('bad client frames on a video socket close it with 1008', async () => {
    const cases: Array<[string, (ws: WebSocket) => void]> = [
      ['text', ws => { ws.send('hello') }],
      ['an audio frame', ws => { ws.send(encodeAudio({ seq: 1, ts: 1, level: 1, data: new Uint8Array(20) })) }],
      ['a chunk over MAX_VIDEO_CHUNK_BYTES', ws => { ws.send(encodeVideo({ seq: 1, ts: 1, key: true, index: 0, count: 1, data: new Uint8Array(MAX_VIDEO_CHUNK_BYTES + 1) })) }],
      ['index past count', ws => { ws.send(encodeVideo({ seq: 1, ts: 1, key: true, index: 2, count: 2, data: new Uint8Array(10) })) }],
      ['a short board note', ws => { ws.send(Uint8Array.of(4, 1, 0)) }],
      ['a KEYFRAME with a did cut short', ws => { ws.send(Uint8Array.of(7, 5, 65)) }]
    ]
    for (const [what, bad] of cases) {
      const ws = await open(videoUrl(apiA, tokenA))
      const done = closed(ws)
      bad(ws)
      const { code, reason } = await done
      assert.equal(code, 1008, `${what}: ${reason}`)
    }
    assert.ok(a.started)
  })
})
