import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { once } from 'node:events'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { PeerSet, runCli, waitFor } from '../helpers/cli-peer.ts'

const set = new PeerSet()
after(async () => { await set.cleanup() })

describe('peerverse CLI', () => {
  it('prints help for every command and exits 0', async () => {
    for (const cmd of [['--help'], ['init', '--help'], ['start', '--help'], ['status', '--help'], ['peers', '--help'], ['find-peer', '--help'], ['connect', '--help'], ['gossip', '--help'], ['invite', '--help'], ['join', '--help']]) {
      const r = await runCli(cmd)
      assert.equal(r.code, 0, cmd.join(' '))
      assert.match(r.stdout, /Usage|Commands/, cmd.join(' '))
    }
  })

  it('init creates an owner-only key once and keeps it on a second run', async () => {
    const dir = join(await set.tempDir(), 'data')
    const a = await runCli(['init', '--data', dir, '--json'])
    assert.equal(a.code, 0, a.stderr)
    const first = JSON.parse(a.stdout)
    assert.equal(first.created, true)
    assert.match(first.did, /^did:key:z6Mk/)
    assert.equal((await stat(join(dir, 'identity.json'))).mode & 0o777, 0o600)
    const b = await runCli(['init', '--data', dir, '--json'])
    const second = JSON.parse(b.stdout)
    assert.equal(second.created, false)
    assert.equal(second.did, first.did)
    assert.equal(second.peerId, first.peerId)
  })

  it('refuses bad flags, a missing data dir and an unknown command with one line and exit 2', async () => {
    for (const args of [['start', '--bogus'], ['status', '--data', '/nonexistent/peerverse'], ['frobnicate'], ['start', '--listen', 'nope', '--data', '/tmp/x-unused'], ['find-peer']]) {
      const r = await runCli(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, /^peerverse: /)
    }
  })

  it('says so when no peer runs on a data dir', async () => {
    const dir = await set.tempDir()
    await runCli(['init', '--data', dir])
    const r = await runCli(['status', '--data', dir])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /no peer is running for /)
  })

  it('exits with a clear error when a port is in use', async () => {
    const blocker = createServer()
    blocker.listen(0, '127.0.0.1')
    await once(blocker, 'listening')
    const port = (blocker.address() as { port: number }).port
    try {
      const dir = await set.tempDir()
      const p2p = await runCli(['start', '--data', dir, '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--api', '127.0.0.1:0', '--no-mdns'])
      assert.equal(p2p.code, 1)
      assert.match(p2p.stderr, /in use/)
      const api = await runCli(['start', '--data', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${port}`, '--no-mdns'])
      assert.equal(api.code, 1)
      assert.match(api.stderr, /API port .* in use/)
    } finally {
      blocker.close()
    }
  })

  it('starts with an unreachable bootstrap, says so, keeps trying, and stops cleanly on SIGTERM', async () => {
    const dead = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWHA2LP2mTvhM1oESTY8J2ed6VB5tx4T83Go7E9ECAXYoq'
    const peer = await set.start({ bootstrap: [dead] })
    await waitFor('two bootstrap retries', () => (peer.stderr().match(/bootstrap .* unreachable/g)?.length ?? 0) >= 2, 30_000)
    const status = await runCli(['status', '--data', peer.dataDir, '--json'])
    assert.equal(status.code, 0, status.stderr)
    const json = JSON.parse(status.stdout)
    assert.equal(json.peerId, peer.ready.peerId)
    assert.equal(json.did, peer.ready.did)
    assert.ok(Array.isArray(json.addresses) && json.addresses.length > 0)
    assert.deepEqual(json.peers, [])
    assert.equal(await set.stop(peer), 0)
    // The API is gone and the store is closed: the same data dir starts again at once.
    const again = await set.start({ dataDir: peer.dataDir })
    assert.equal(again.ready.peerId, peer.ready.peerId)
  })
})
