/**
 * The local API's token rules, on a real node and a real HTTP server on loopback: the query token
 * only where a browser cannot send a header, the challenge that proves our peer without the token
 * leaving, and the idle limit on request bodies (a stalled body gets 408, a slow steady one goes on).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request, type IncomingMessage, type Server } from 'node:http'
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { ApiClient, PeerNotRunningError, PeerProofError } from '../../src/api/client.ts'
import { API_INFO_FILE, API_PROOF_PATH, apiProof, proofNonce } from '../../src/api/auth.ts'
import { ApiServer, API_TOKEN_FILE, createApiToken } from '../../src/api/server.ts'
import { LocalPeers } from '../helpers/local-peers.ts'
import { seeded } from '../helpers/random.ts'
import type { PeerverseNode } from '../../src/node/node.ts'

/** The idle limit these servers run with, so the test is quick (the default is API_IDLE_TIMEOUT_MS). */
const IDLE_MS = 400

interface Raw { status: number, headers: IncomingMessage['headers'], body: string }

/** One HTTP request; `write` sends the body (the request ends when it resolves). */
async function rawRequest (url: string, method: string, headers: Record<string, string>, write?: (req: ReturnType<typeof request>) => Promise<void>): Promise<Raw> {
  const req = request(url, { method, headers })
  const answered = new Promise<Raw>((resolve, reject) => {
    req.on('response', res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', d => { body += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  if (write != null) {
    // The body goes on until the server answers (a stalled upload is answered while it waits).
    await Promise.race([write(req), answered.then(() => {})])
  }
  req.end()
  return await answered
}

describe('local API: token, proof and idle limit', () => {
  const peers = new LocalPeers('api-auth')
  let node: PeerverseNode
  let api: ApiServer
  let token: string
  const servers: Array<Server | ReturnType<typeof createTcpServer>> = []
  const dirs: string[] = []

  before(async () => {
    node = await peers.startNode()
    token = await createApiToken(node.config.dataDir)
    api = new ApiServer(node, { host: '127.0.0.1', port: 0, token, webRoot: null, idleTimeoutMs: IDLE_MS })
    await api.start()
  })

  after(async () => {
    for (const s of servers) { if ('closeAllConnections' in s) s.closeAllConnections(); s.close() }
    await api?.stop()
    await peers.stop()
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  const bearer = (): Record<string, string> => ({ authorization: `Bearer ${token}` })

  it('a token in the query is refused on every endpoint but the event WebSocket and GET /content', async () => {
    const q = `token=${encodeURIComponent(token)}`
    const ok = await fetch(`${api.url}/api/v0/status`, { headers: bearer() })
    assert.equal(ok.status, 200)
    await ok.arrayBuffer()
    for (const [method, path] of [['GET', '/api/v0/status'], ['GET', '/api/v0/peers'], ['POST', '/api/v0/gossip/publish'], ['POST', '/api/v0/content/add'], ['GET', '/api/v0/content/pins']]) {
      // Even with the right header beside it: the query token is not taken here.
      for (const headers of [{}, bearer()]) {
        const res = await fetch(`${api.url}${path}?${q}`, { method, headers })
        assert.equal(res.status, 401, `${method} ${path}`)
        const json = await res.json() as { error: string, message: string }
        assert.equal(json.error, 'QueryTokenRefused')
        assert.match(json.message, /Authorization: Bearer/)
      }
    }
    // Media: GET and HEAD of /content take it (an <img> or <video> sends no header).
    const bytes = seeded(7).bytes(5000)
    const added = await fetch(`${api.url}/api/v0/content/add?name=a.bin`, { method: 'POST', headers: bearer(), body: Buffer.from(bytes) })
    assert.equal(added.status, 200)
    const { cid } = await added.json() as { cid: string }
    const media = await fetch(`${api.url}/content/${cid}?${q}`)
    assert.equal(media.status, 200)
    assert.deepEqual(new Uint8Array(await media.arrayBuffer()), bytes)
    const head = await fetch(`${api.url}/content/${cid}?${q}`, { method: 'HEAD' })
    assert.equal(head.status, 200)
    const wrong = await fetch(`${api.url}/content/${cid}?token=not-the-token`)
    assert.equal(wrong.status, 401)
    await wrong.arrayBuffer()
    // The event WebSocket takes it.
    const ws = new WebSocket(`${api.url.replace(/^http/, 'ws')}/api/v0/events?${q}`)
    const [hello] = await once(ws, 'message') as [Buffer]
    assert.equal(JSON.parse(hello.toString()).type, 'hello')
    ws.close()
    await once(ws, 'close')
  })

  it('the peer answers the challenge for its own URL, and the client proves it before sending the token', async () => {
    const nonce = proofNonce()
    const res = await fetch(`${api.url}${API_PROOF_PATH}?nonce=${nonce}`)
    assert.equal(res.status, 200)
    const { proof } = await res.json() as { proof: string }
    assert.equal(proof, apiProof(token, api.url, nonce))
    for (const bad of ['', 'short', 'a'.repeat(44), '!'.repeat(43)]) {
      const r = await fetch(`${api.url}${API_PROOF_PATH}?nonce=${encodeURIComponent(bad)}`)
      assert.equal(r.status, 400, JSON.stringify(bad))
      assert.equal((await r.json() as { error: string }).error, 'InvalidNonce')
    }
    const client = new ApiClient(api.url, token)
    assert.equal((await client.request<{ peerId: string }>('GET', '/api/v0/status')).peerId, node.peerId)
    // A client that holds another token finds the peer unproven and sends nothing.
    await assert.rejects(new ApiClient(api.url, 'x'.repeat(token.length)).request('GET', '/api/v0/status'), PeerProofError)
  })

  it('a server on another port that relays the challenge to the real peer does not pass, and never sees the token', async () => {
    const seen: string[] = []
    const relay = createServer((req, res) => {
      seen.push(JSON.stringify([req.method, req.url, req.headers]))
      const inner = request(`${api.url}${req.url ?? '/'}`, { method: req.method, headers: { ...req.headers, host: new URL(api.url).host } }, r => {
        res.writeHead(r.statusCode ?? 500, r.headers)
        r.pipe(res)
      })
      inner.on('error', () => { res.destroy() })
      req.pipe(inner)
    })
    servers.push(relay)
    relay.listen(0, '127.0.0.1')
    await once(relay, 'listening')
    const relayUrl = `http://127.0.0.1:${(relay.address() as AddressInfo).port}`
    // A data dir whose api.json names the relay, with a live pid (this process) and the real token.
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-api-relay-'))
    dirs.push(dir)
    await writeFile(join(dir, API_INFO_FILE), JSON.stringify({ url: relayUrl, pid: process.pid, peerId: node.peerId, did: node.did }))
    await writeFile(join(dir, API_TOKEN_FILE), token + '\n')
    await assert.rejects(ApiClient.forDataDir(dir), (err: Error) => {
      assert.ok(err instanceof PeerNotRunningError, err.name)
      assert.match(err.message, new RegExp(`no peer is running for ${dir} \\(stale api\\.json`))
      return true
    })
    assert.ok(seen.length >= 1, 'the relay was asked the challenge')
    for (const s of seen) assert.ok(!s.includes(token), `the relay saw the token: ${s}`)
  })

  it('an upload whose bytes stop coming gets 408 after the idle limit; the peer goes on', async () => {
    const chunk = seeded(11).bytes(16 * 1024)
    const answer = await rawRequest(`${api.url}/api/v0/content/add?name=stalled.bin`, 'POST', { ...bearer(), 'content-type': 'application/octet-stream' }, async req => {
      req.write(chunk)
      await new Promise(() => {}) // never sends more
    })
    assert.equal(answer.status, 408)
    assert.equal(JSON.parse(answer.body).error, 'RequestTimeout')
    // A JSON body that stalls likewise.
    const json = await rawRequest(`${api.url}/api/v0/gossip/publish`, 'POST', { ...bearer(), 'content-type': 'application/json', 'content-length': '100' }, async req => {
      req.write('{"topic":')
      await new Promise(() => {})
    })
    assert.equal(json.status, 408)
    const status = await fetch(`${api.url}/api/v0/status`, { headers: bearer() })
    assert.equal(status.status, 200)
    await status.arrayBuffer()
  })

  it('an upload that takes many idle limits but keeps sending succeeds, and so does an answer slower than the idle limit', async () => {
    const rnd = seeded(12)
    const pieces: Uint8Array[] = []
    // 16 pieces, each sent a quarter of the idle limit after the last: four idle limits in all.
    const answer = await rawRequest(`${api.url}/api/v0/content/add?name=slow.bin`, 'POST', { ...bearer(), 'content-type': 'application/octet-stream' }, async req => {
      for (let i = 0; i < 16; i++) {
        const piece = rnd.bytes(8 * 1024)
        pieces.push(piece)
        req.write(piece)
        await new Promise(resolve => setTimeout(resolve, IDLE_MS / 4))
      }
    })
    assert.equal(answer.status, 200, answer.body)
    const { cid, size } = JSON.parse(answer.body) as { cid: string, size: number }
    assert.equal(size, 16 * 8 * 1024)
    const back = await fetch(`${api.url}/content/${cid}`, { headers: bearer() })
    assert.deepEqual(new Uint8Array(await back.arrayBuffer()), new Uint8Array(Buffer.concat(pieces)))
    // The request is complete while the peer works on it: no 408, whatever the time it takes. A
    // dial to a port that accepts, says nothing and hangs up after three idle limits takes that long.
    const mute = createTcpServer((socket: Socket) => { setTimeout(() => { socket.destroy() }, IDLE_MS * 3) })
    servers.push(mute)
    mute.listen(0, '127.0.0.1')
    await once(mute, 'listening')
    const port = (mute.address() as AddressInfo).port
    const slowAnswer = await rawRequest(`${api.url}/api/v0/connect`, 'POST', { ...bearer(), 'content-type': 'application/json' }, async req => {
      req.write(JSON.stringify({ address: `/ip4/127.0.0.1/tcp/${port}/p2p/12D3KooWHA2LP2mTvhM1oESTY8J2ed6VB5tx4T83Go7E9ECAXYoq` }))
    })
    assert.notEqual(slowAnswer.status, 408, slowAnswer.body)
    assert.ok(JSON.parse(slowAnswer.body).error != null, slowAnswer.body)
  })
})
