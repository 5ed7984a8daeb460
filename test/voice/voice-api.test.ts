/**
 * Voice through the local API, between two in-process peers each with its ApiServer: a `ws`
 * client on A's voice WebSocket sends microphone frames, a client on B's voice WebSocket receives
 * them in the peer-to-client format; bad client frames close the socket with 1008; GET
 * /api/v0/voice reflects the speakers; the mute route; the token and the client bound are enforced;
 * `voice:speaking` reaches the JSON event stream and `voice:frame` does not.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import { ApiServer, createApiToken, MAX_VOICE_CLIENTS, MAX_VOICE_WS_PAYLOAD_BYTES, VOICE_CLOSE_LEFT_SPACE } from '../../src/api/server.ts'
import { closeReason, MAX_CLOSE_REASON_BYTES, VOICE_CLOSE_LEFT_SPACE_REASON } from '../../src/api/routes/voice.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { spaceTopic } from '../../src/space/index.ts'
import { decodeClientFrameFromPeer, encodeAudio, MAX_VOICE_CLIENT_MESSAGE_BYTES, type VoiceState } from '../../src/voice/index.ts'
import { runCli } from '../helpers/cli-peer.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seeded } from '../helpers/random.ts'

const STEP_MS = 20_000
const peers = new LocalPeers('voice-api')
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })
const sockets: WebSocket[] = []

describe('voice through the local API', { timeout: 300_000 }, () => {
  let a: PeerverseNode, b: PeerverseNode
  let apiA: ApiServer, apiB: ApiServer
  let tokenA = '', tokenB = ''
  let space = ''

  const wsUrl = (api: ApiServer, token: string, path = '/api/v0/voice/ws'): string =>
    `${api.url.replace(/^http/, 'ws')}${path}?space=${encodeURIComponent(space)}&token=${encodeURIComponent(token)}`

  /** A WebSocket once open, or the HTTP status its upgrade was refused with. */
  async function connect (url: string): Promise<WebSocket | number> {
    const ws = new WebSocket(url)
    sockets.push(ws)
    return await new Promise((resolve, reject) => {
      ws.once('open', () => { resolve(ws) })
      ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0) })
      ws.once('error', reject)
    })
  }

  async function open (url: string): Promise<WebSocket> {
    const ws = await connect(url)
    assert.ok(ws instanceof WebSocket, `refused with ${String(ws)}`)
    return ws
  }

  /** How a socket closed: its code and reason. */
  async function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
    return await new Promise(resolve => { ws.once('close', (code, reason) => { resolve({ code, reason: reason.toString() }) }) })
  }

  async function get (api: ApiServer, token: string, path: string, init: RequestInit = {}): Promise<{ status: number, body: any }> {
    const res = await fetch(`${api.url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers } })
    return { status: res.status, body: await res.json() }
  }

  before(async () => {
    a = await peers.startNode()
    b = await peers.startNode()
    await a.connect(b.addresses().find(x => x.includes('/tcp/')) as string, { signal: AbortSignal.timeout(STEP_MS) })
    space = (await a.space.create({ name: 'Call', displayName: 'a' })).id
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

  it('frames from a client on A reach a client on B; GET state reflects the speaker; voice:speaking is on the event stream', async () => {
    const events = await open(`${apiB.url.replace(/^http/, 'ws')}/api/v0/events?token=${encodeURIComponent(tokenB)}`)
    const types: string[] = []
    events.on('message', data => { types.push((JSON.parse(data.toString()) as { type: string }).type) })
    const listener = await open(wsUrl(apiB, tokenB))
    const got: Array<ReturnType<typeof decodeClientFrameFromPeer>> = []
    listener.on('message', (data, isBinary) => { if (isBinary) got.push(decodeClientFrameFromPeer(new Uint8Array(data as Buffer))) })
    const mic = await open(wsUrl(apiA, tokenA))
    const random = seeded(5)
    const sent = new Map<number, Uint8Array>()
    let seq = 0
    const timer = setInterval(() => {
      const data = random.bytes(80)
      sent.set(++seq, data)
      mic.send(encodeAudio({ seq, ts: seq * 20, level: 90, data }))
    }, 20)
    try {
      await eventually('B\'s client gets 30 frames', () => got.length >= 30)
      for (const f of got) {
        assert.equal(f.did, a.did)
        assert.equal(f.level, 90)
        assert.equal(f.ts, f.seq * 20)
        assert.deepEqual(Uint8Array.from(f.data), sent.get(f.seq))
      }
      const state = (await get(apiB, tokenB, `/api/v0/voice?space=${encodeURIComponent(space)}`)).body as VoiceState
      assert.equal(state.listening, true)
      assert.deepEqual(state.heard, [a.did])
      assert.ok(state.speakers.some(s => s.did === a.did && s.talking && s.receiving))
      assert.equal((await get(apiA, tokenA, `/api/v0/voice?space=${encodeURIComponent(space)}`)).body.sending, true)
      await eventually('voice:speaking reaches the event stream', () => types.includes('voice:speaking'))
      assert.ok(!types.includes('voice:frame'), 'frames stay off the JSON event stream')
      // The personal mute, through the API: B's client gets nothing more of A.
      const muted = await get(apiB, tokenB, '/api/v0/voice/mute', { method: 'POST', body: JSON.stringify({ space, did: a.did, muted: true }) })
      assert.equal(muted.status, 200)
      assert.deepEqual(muted.body.heard, [])
      const n = got.length
      const unwanted = b.voice.state(space).dropped.unwanted
      const voiceMuted = b.voice.state(space).dropped['voice-muted']
      await eventually('A\'s frames or notes are refused at B meanwhile', () => b.voice.state(space).dropped.unwanted + b.voice.state(space).dropped['voice-muted'] > unwanted + voiceMuted + 5)
      assert.equal(got.length, n)
      await get(apiB, tokenB, '/api/v0/voice/mute', { method: 'POST', body: JSON.stringify({ space, did: a.did, muted: false }) })
    } finally {
      clearInterval(timer)
    }
    // Closing the socket stops listening.
    const done = closed(listener)
    listener.close()
    await done
    await eventually('B no longer listens', () => !b.voice.state(space).listening)
    events.close()
    mic.close()
  })

  it('bad client frames close the socket with 1008', async () => {
    const cases: Array<[string, (ws: WebSocket) => void, number]> = [
      ['text', ws => { ws.send('hello') }, 1008],
      ['unknown type', ws => { ws.send(Uint8Array.of(9, 1, 2, 3)) }, 1008],
      ['short', ws => { ws.send(Uint8Array.of(1, 0, 0)) }, 1008],
      // Past the server's maxPayload (MAX_VOICE_WS_PAYLOAD_BYTES, a client frame's bound) the server closes before reading it whole.
      [`over MAX_VOICE_WS_PAYLOAD_BYTES (${MAX_VOICE_WS_PAYLOAD_BYTES})`, ws => { ws.send(new Uint8Array(MAX_VOICE_WS_PAYLOAD_BYTES + 1).fill(1)) }, 1009],
      ['far over it', ws => { ws.send(new Uint8Array(32 * 1024).fill(1)) }, 1009]
    ]
    assert.equal(MAX_VOICE_WS_PAYLOAD_BYTES, MAX_VOICE_CLIENT_MESSAGE_BYTES)
    for (const [what, bad, expected] of cases) {
      const ws = await open(wsUrl(apiA, tokenA))
      const done = closed(ws)
      bad(ws)
      const { code, reason } = await done
      assert.equal(code, expected, `${what}: ${reason}`)
    }
    assert.ok(a.started)
  })

  it('the token, the space and MAX_VOICE_CLIENTS are enforced at the upgrade', async () => {
    assert.equal(await connect(wsUrl(apiA, 'wrong-token')), 401)
    const noToken = await connect(`${apiA.url.replace(/^http/, 'ws')}/api/v0/voice/ws?space=${encodeURIComponent(space)}`)
    assert.equal(noToken, 401)
    assert.equal((await get(apiA, 'nope', `/api/v0/voice?space=${encodeURIComponent(space)}`)).status, 401)
    assert.equal(await connect(wsUrl(apiA, tokenA).replace(encodeURIComponent(space), 'not-a-space')), 404)
    const held: WebSocket[] = []
    for (let i = 0; i < MAX_VOICE_CLIENTS; i++) held.push(await open(wsUrl(apiA, tokenA)))
    assert.equal(await connect(wsUrl(apiA, tokenA)), 503)
    for (const ws of held) ws.close()
  })

  it('`peerverse voice` prints the state of each space we are in', async () => {
    const r = await runCli(['voice', '--data', b.config.dataDir])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, new RegExp(`^${space}: not listening, not sending \\(hears at most 8 within 30 m\\)`, 'm'))
    assert.match(r.stdout, /dropped: .*unwanted \d+|dropped: .*voice-muted \d+/)
    const json = JSON.parse((await runCli(['voice', '--space', space, '--json', '--data', b.config.dataDir])).stdout) as Record<string, VoiceState>
    assert.deepEqual(Object.keys(json), [space])
    assert.equal((await runCli(['voice', 'extra', '--data', b.config.dataDir])).code, 2)
  })

  it(`a close reason is cut to MAX_CLOSE_REASON_BYTES (${MAX_CLOSE_REASON_BYTES}) bytes of UTF-8`, () => {
    assert.equal(closeReason('short'), 'short')
    const long = closeReason('é'.repeat(200))
    assert.ok(Buffer.byteLength(long) <= MAX_CLOSE_REASON_BYTES && long.length === Math.floor(MAX_CLOSE_REASON_BYTES / 2))
  })

  // Last: B leaves the space.
  it('leaving the space closes its voice and video sockets with VOICE_CLOSE_LEFT_SPACE', async () => {
    const voiceWs = await open(wsUrl(apiB, tokenB))
    const videoWs = await open(wsUrl(apiB, tokenB) + '&media=video')
    const done = [closed(voiceWs), closed(videoWs)]
    await eventually('B listens', () => b.voice.state(space).listening)
    await b.space.leave(space)
    for (const c of await Promise.all(done)) assert.deepEqual(c, { code: VOICE_CLOSE_LEFT_SPACE, reason: VOICE_CLOSE_LEFT_SPACE_REASON })
    assert.ok(b.started)
  })
})
