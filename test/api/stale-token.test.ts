/**
 * The API token across a peer's life, on real `peerverse` processes: a new token on every start
 * (the last one refused at once), api.json gone after a clean stop, and after a kill -9 the CLI
 * never hands the token to whatever took the port: it exits 1 with a clear message instead.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_INFO_FILE, API_TOKEN_FILE } from '../../src/api/auth.ts'
import { PeerSet, runCli } from '../helpers/cli-peer.ts'

const set = new PeerSet()
const fakes: Server[] = []
after(async () => {
  for (const f of fakes) { f.closeAllConnections(); f.close() }
  await set.cleanup()
})

/** Every request a server got: method, URL, headers and body, as one string each. */
interface Fake { server: Server, seen: string[] }

/** A server on `port` that answers every request 200 with plausible JSON and records it. */
async function fakeOn (port: number): Promise<Fake> {
  const seen: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', d => { body += d })
    req.on('end', () => {
      seen.push(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body }))
      const json = JSON.stringify({ proof: 'A'.repeat(43), peerId: 'fake', did: 'fake', addresses: [], peers: [] })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(json)
    })
  })
  fakes.push(server)
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return { server, seen }
}

describe('the API token across restarts and crashes (real processes)', () => {
  it('each start makes a new token; the old one is refused at once; a clean stop removes api.json', async () => {
    const first = await set.start()
    const token1 = (await readFile(join(first.dataDir, API_TOKEN_FILE), 'utf8')).trim()
    assert.equal((await first.api.request<{ peerId: string }>('GET', '/api/v0/status')).peerId, first.ready.peerId)
    assert.equal(await set.stop(first), 0)
    await assert.rejects(stat(join(first.dataDir, API_INFO_FILE)), { code: 'ENOENT' })
    const gone = await runCli(['status', '--data', first.dataDir])
    assert.equal(gone.code, 1)
    assert.match(gone.stderr, /no peer is running for /)

    const second = await set.start({ dataDir: first.dataDir })
    const token2 = (await readFile(join(second.dataDir, API_TOKEN_FILE), 'utf8')).trim()
    assert.notEqual(token2, token1)
    assert.equal((await stat(join(second.dataDir, API_TOKEN_FILE))).mode & 0o777, 0o600)
    const old = await fetch(`${second.api.url}/api/v0/status`, { headers: { authorization: `Bearer ${token1}` } })
    assert.equal(old.status, 401)
    await old.arrayBuffer()
    const now = await fetch(`${second.api.url}/api/v0/status`, { headers: { authorization: `Bearer ${token2}` } })
    assert.equal(now.status, 200)
    await now.arrayBuffer()
    const status = await runCli(['status', '--data', second.dataDir, '--json'])
    assert.equal(status.code, 0, status.stderr)
    assert.equal(JSON.parse(status.stdout).peerId, second.ready.peerId)
    await set.stop(second)
  })

  it('after kill -9, a fake server on the stale port never receives the token and status fails clearly', async () => {
    const peer = await set.start()
    const token = peer.api.token
    const port = Number(new URL(peer.api.url).port)
    await set.kill(peer)
    // The stale api.json stays behind a kill -9; someone else takes the port.
    const info = JSON.parse(await readFile(join(peer.dataDir, API_INFO_FILE), 'utf8')) as { pid: number }
    assert.equal(info.pid, peer.proc.pid)
    const fake = await fakeOn(port)

    const check = (what: string, r: { code: number, stderr: string }): void => {
      assert.equal(r.code, 1, `${what}: ${r.stderr}`)
      assert.match(r.stderr, new RegExp(`^peerverse: no peer is running for ${peer.dataDir} \\(stale api\\.json`), what)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      for (const s of fake.seen) assert.ok(!s.includes(token), `${what}: the fake server received the token: ${s}`)
    }
    // The pid in api.json is dead: the CLI does not even connect.
    for (const cmd of ['status', 'peers']) check(`${cmd}, dead pid`, await runCli([cmd, '--data', peer.dataDir]))
    assert.deepEqual(fake.seen, [])

    // The pid reused by a live process (this one): the port is asked to prove itself and fails.
    await writeFile(join(peer.dataDir, API_INFO_FILE), JSON.stringify({ ...info, pid: process.pid }))
    for (const cmd of [['status'], ['peers'], ['gossip', 'publish', 'topic', 'text']]) {
      check(`${cmd[0]}, live pid`, await runCli([...cmd, '--data', peer.dataDir]))
    }
    assert.ok(fake.seen.length >= 3, 'the fake server was challenged')
    for (const s of fake.seen) assert.match(JSON.parse(s).url, /^\/api\/v0\/proof\?nonce=[A-Za-z0-9_-]{43}$/)
    // A new nonce each run: nothing is cached across runs.
    assert.equal(new Set(fake.seen.map(s => JSON.parse(s).url)).size, fake.seen.length)
  })
})
