/**
 * Bitswap interop with a stock Helia node in its own process, against real `peerverse start`
 * processes on 127.0.0.1: Helia fetches what `peerverse add` stored, and `peerverse get` fetches
 * what only Helia holds. Each check hashes the whole file on both sides.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { PeerSet, runCli, type CliPeer } from '../helpers/cli-peer.ts'
import { HeliaPeer } from '../helpers/helia-peer.ts'
import { seededBytes } from '../helpers/random.ts'

const MiB = 1024 * 1024

function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

// One Peerverse process and one Helia process serve both tests (starting them is most of the time).
const peers = new PeerSet()
let peer: CliPeer
let helia: HeliaPeer
before(async () => { [peer, helia] = await Promise.all([peers.start(), HeliaPeer.start()]) })
after(async () => { await Promise.all([helia?.stop(), peers.cleanup()]) })

test('a stock Helia node fetches a 20 MiB file added by peerverse add, over Bitswap', async t => {
  const defer = cleanups(t)
  const dir = await tempDir(defer, 'bitswap-add')
  const file = join(dir, 'file.bin')
  const bytes = seededBytes(20 * MiB, 20)
  await writeFile(file, bytes)
  const added = await runCli(['add', file, '--data', peer.dataDir, '--json'])
  assert.equal(added.code, 0, added.stderr)
  const { cid } = JSON.parse(added.stdout) as { cid: string }

  // Helia completes identify with us (the standard id) and so learns that we speak Bitswap.
  await helia.request({ cmd: 'dial', addr: peer.addr })
  const got = await helia.request({ cmd: 'cat', cid, timeoutMs: 60_000 })
  assert.equal(got.bytes, bytes.length)
  assert.equal(got.sha256, sha256(bytes))
  const status = await peer.api.request<{ content: { blocksServed: number } }>('GET', '/api/v0/status')
  assert.ok(status.content.blocksServed >= 20, `served ${status.content.blocksServed} blocks`)
})

test('peerverse get fetches a file that only a connected Helia node holds', async t => {
  const defer = cleanups(t)
  const size = 6 * MiB + 12_345
  const added = await helia.request({ cmd: 'add', size, seed: 21 })
  const cid = added.cid as string
  const connected = await runCli(['connect', helia.addrs[0].includes('/p2p/') ? helia.addrs[0] : `${helia.addrs[0]}/p2p/${helia.peerId}`, '--data', peer.dataDir])
  assert.equal(connected.code, 0, connected.stderr)

  const dir = await tempDir(defer, 'bitswap-get')
  const out = join(dir, 'out.bin')
  const got = await runCli(['get', cid, '-o', out, '--data', peer.dataDir, '--json'])
  assert.equal(got.code, 0, got.stderr)
  const bytes = await readFile(out)
  assert.equal(bytes.length, size)
  assert.equal(sha256(bytes), added.sha256)
})
