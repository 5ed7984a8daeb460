/**
 * Bad input to joining a network, against real nodes in this process on 127.0.0.1 and bare libp2p
 * peers that lie: a genesis whose bytes do not match its CID (the content swarm refuses them), a
 * handshake that claims one chain for a genesis naming another, bootstrap peers on different
 * chains, and malformed or oversized handshake frames. Each gets a named error or is rejected and
 * counted, and nothing is written to the joiner's data dir. Also the runtime join: a peer on its
 * default devnet switches its ledger to the joined chain; one that follows a network refuses.
 */
import { describe, it, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as lp from 'it-length-prefixed'
import { multiaddr } from '@multiformats/multiaddr'
import { createNode, type PeerverseNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig, type PartialConfig } from '../../src/node/config.ts'
import { libp2pProtocols } from '../../src/net/libp2p-ports.ts'
import { formatLink } from '../../src/net/links.ts'
import { decodeMessage, encodeMessage, MAX_FRAME_BYTES, SWARM_PROTOCOL, type SwarmMessage } from '../../src/content/swarm-wire.ts'
import { importFile, type Block } from '../../src/content/unixfs.ts'
import { devnetGenesis, genesisJson } from '../../src/ledger/genesis.ts'
import { MAX_HANDSHAKE_BYTES, NETWORK_PROTOCOL, NetworkIdService, decodeHandshake, encodeHandshake } from '../../src/node/network-id.ts'
import { MAX_GENESIS_BYTES, MAX_REMEMBERED_PEERS, NETWORK_FILE, readNetworkFile } from '../../src/node/join.ts'
import { LocalPeers, exchange, waiter } from '../helpers/local-peers.ts'
import { cat, varint, utf8 } from '../helpers/bytes.ts'

const peers = new LocalPeers('join-bad')
const eventually = waiter({ timeoutMs: 30_000, intervalMs: 100 })
/** Joins in this file give up after this long (the default is JOIN_TIMEOUT_MS). */
const JOIN_MS = 8_000

/** A node that is not started, on a fresh data dir, with `config` on top of the test defaults. */
async function joiner (config: PartialConfig): Promise<{ node: PeerverseNode, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-join-bad-'))
  peers.dirs.push(dir)
  const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }, config), { joinTimeoutMs: JOIN_MS })
  peers.nodes.push(node)
  return { node, dir }
}

const frame = (msg: SwarmMessage): Uint8Array => { const b = encodeMessage(msg).subarray(); return cat(varint(b.length), b) }

describe('joining a network: bad input', { timeout: 180_000 }, () => {
  let a: PeerverseNode
  let aAddr: string
  before(async () => {
    a = await peers.startNode()
    aAddr = a.addresses()[0]
  })
  after(async () => { await peers.stop() })

  it('refuses a genesis whose bytes do not match its CID (the swarm rejects the holder) and writes nothing', async () => {
    // A genesis only the liar "holds": it answers with other bytes under its CID.
    const bytes = utf8(genesisJson(devnetGenesis([a.did])))
    const blocks: Block[] = []
    const { cid } = await importFile([bytes], async b => { blocks.push(b) })
    const liar = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
    const handshake = new NetworkIdService({ protocols: libp2pProtocols(liar), startPeers: [], onMismatch: () => {} })
    await handshake.start()
    handshake.setOwn({ genesis: cid.toString(), chain: 'liar' }, true)
    await liar.handle(SWARM_PROTOCOL, stream => {
      void (async () => {
        try {
          for await (const f of lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })) {
            const msg = decodeMessage(f.subarray())
            if (msg.type === 'open') stream.send(frame({ type: 'bitfield', status: 'complete', leaves: 0, bits: new Uint8Array(0) }))
            if (msg.type === 'want') {
              const forged = bytes.slice()
              forged[10] ^= 0xff
              stream.send(frame({ type: 'block', cid: msg.cid, bytes: forged }))
            }
          }
        } catch {}
      })()
    })
    const liarAddr = `${liar.getMultiaddrs()[0].toString()}`
    const { node, dir } = await joiner({ ledger: { join: formatLink({ kind: 'join', target: cid.toString(), peers: [liarAddr] }) } })
    const rejected: string[] = []
    node.addEventListener('peer:rejected', evt => { rejected.push(evt.detail.error) })
    await assert.rejects(node.start(), (err: Error) => {
      assert.equal(err.name, 'JoinError')
      assert.match(err.message, new RegExp(`could not fetch the genesis ${cid.toString()}`))
      return true
    })
    assert.ok(rejected.some(e => /BadBlockError/.test(e)), `the liar was rejected: ${rejected.join('; ')}`)
    const files = await readdir(dir)
    assert.ok(!files.includes('genesis.json') && !files.includes(NETWORK_FILE), files.join(' '))
    await handshake.stop()
  })

  it('refuses content over MAX_GENESIS_BYTES named as a genesis, and writes nothing', async () => {
    const big = new Uint8Array(MAX_GENESIS_BYTES + 1).fill(0x20)
    const { cid } = await a.content.add(big, { name: 'not a genesis' })
    const { node, dir } = await joiner({ ledger: { join: formatLink({ kind: 'join', target: cid.toString(), peers: [aAddr] }) } })
    await assert.rejects(node.start(), (err: Error) => {
      assert.equal(err.name, 'JoinError')
      assert.match(err.message, new RegExp(`over ${MAX_GENESIS_BYTES} bytes`))
      return true
    })
    assert.ok(!(await readdir(dir)).includes('genesis.json'))
  })

  it('remembers at most MAX_REMEMBERED_PEERS peers of a network, only real addresses, and refuses a record that is not JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-join-bad-'))
    peers.dirs.push(dir)
    const many = Array.from({ length: MAX_REMEMBERED_PEERS + 5 }, (_, i) => `/ip4/127.0.0.1/tcp/${2000 + i}/p2p/${a.peerId}`)
    await writeFile(join(dir, NETWORK_FILE), JSON.stringify({ genesis: 'g', chain: 'c', peers: ['not an address', ...many] }))
    assert.deepEqual((await readNetworkFile(dir))?.peers, many.slice(0, MAX_REMEMBERED_PEERS))
    await writeFile(join(dir, NETWORK_FILE), '{ not json')
    await assert.rejects(readNetworkFile(dir), { name: 'JoinError' })
  })

  it('refuses a peer whose handshake claims one chain for a genesis that names another (ChainClaimError)', async () => {
    const aNet = a.status().network
    const liar = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
    const handshake = new NetworkIdService({ protocols: libp2pProtocols(liar), startPeers: [], onMismatch: () => {} })
    await handshake.start()
    handshake.setOwn({ genesis: aNet.genesis, chain: 'not-the-chain' }, true)
    const { node, dir } = await joiner({ ledger: { join: formatLink({ kind: 'join', target: aNet.genesis, peers: [liar.getMultiaddrs()[0].toString(), aAddr] }) } })
    await assert.rejects(node.start(), (err: Error) => {
      assert.equal(err.name, 'ChainClaimError')
      assert.ok(err.message.includes('not-the-chain') && err.message.includes(aNet.chain), err.message)
      return true
    })
    const files = await readdir(dir)
    assert.ok(!files.includes('genesis.json') && !files.includes(NETWORK_FILE), files.join(' '))
    await handshake.stop()
  })

  it('refuses bootstrap peers on different chains with a JoinError saying what each said', async () => {
    const b = await peers.startNode()
    const { node, dir } = await joiner({ bootstrap: [aAddr, b.addresses()[0]] })
    await assert.rejects(node.start(), (err: Error) => {
      assert.equal(err.name, 'JoinError')
      assert.match(err.message, /different chains/)
      assert.ok(err.message.includes(a.status().network.chain) && err.message.includes(b.status().network.chain), err.message)
      return true
    })
    assert.ok(!(await readdir(dir)).includes('genesis.json'))
  })

  it('rejects and counts malformed and oversized handshake frames, and still answers honest ones', async () => {
    const rogue = await peers.newPeer()
    const log = peers.rejections.get(a) ?? []
    const before = log.length
    const send = async (body: Uint8Array | null, lengthOnly?: number): Promise<string> => {
      const stream = await rogue.dialProtocol(multiaddr(aAddr), NETWORK_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      const answer = await exchange(stream, MAX_HANDSHAKE_BYTES, AbortSignal.timeout(10_000), async lps => {
        if (lengthOnly != null) await lps.unwrap().send(varint(lengthOnly))
        else if (body != null) await lps.write(body)
      })
      return answer.end
    }
    assert.notEqual(await send(utf8('{"chain": 5')), 'eof')
    await eventually('the malformed frame is rejected', () => log.slice(before).some(r => r.protocol === NETWORK_PROTOCOL && /InvalidHandshakeError/.test(r.error)))
    assert.notEqual(await send(utf8(JSON.stringify({ genesis: 'nope', chain: 'x' }))), 'eof')
    await send(null, MAX_HANDSHAKE_BYTES + 1)
    await eventually('the oversized frame is rejected', () => log.slice(before).some(r => r.protocol === NETWORK_PROTOCOL && /InvalidDataLengthError/.test(r.error)))
    // An honest ask is answered with A's name.
    const stream = await rogue.dialProtocol(multiaddr(aAddr), NETWORK_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    const answer = await exchange(stream, MAX_HANDSHAKE_BYTES, AbortSignal.timeout(10_000), async lps => { await lps.write(encodeHandshake(undefined)) })
    assert.equal(answer.end, 'eof')
    assert.deepEqual(decodeHandshake(answer.frames[0]), { genesis: a.status().network.genesis, chain: a.status().network.chain })
    assert.equal(a.started, true)
  })

  it("refuses a network whose genesis reuses the chain id of this data dir's own devnet, and writes nothing", async () => {
    const e = await peers.startNode()
    await eventually('E commits a block of its devnet', () => e.ledger.status().height >= 1)
    const chain = e.ledger.chainId
    // Another genesis under the same chain id (chain ids are the genesis author's choice).
    const g = devnetGenesis([a.did])
    g.chain = chain
    const path = join(await mkdtemp(join(tmpdir(), 'peerverse-join-bad-genesis-')), 'genesis.json')
    peers.dirs.push(join(path, '..'))
    await writeFile(path, genesisJson(g))
    const { node: m } = await joiner({ ledger: { genesis: path } })
    await m.start()
    assert.equal(m.ledger.chainId, chain)
    const code = formatLink({ kind: 'join', target: m.status().network.genesis, peers: [m.addresses()[0]] })
    await assert.rejects(e.chain.join(code), (err: Error) => err.name === 'NetworkMismatchError' && err.message.includes(chain))
    assert.deepEqual((await readdir(e.config.dataDir)).filter(f => f.startsWith('network') || /^genesis\..+\.json$/.test(f)), [])
    assert.equal(e.ledger.chainId, chain)
    assert.equal(e.status().network.devnet, true)
    const height = e.ledger.status().height
    await eventually('E goes on with its devnet', () => e.ledger.status().height > height)
  })

  it('a peer on its default devnet joins a network at runtime and switches its ledger; a peer that follows a network refuses (NetworkMismatchError)', async () => {
    const e = await peers.startNode()
    const aNet = a.status().network
    const code = formatLink({ kind: 'join', target: aNet.genesis, peers: [aAddr] })
    const res = await e.chain.join(code)
    assert.deepEqual(res, { genesis: aNet.genesis, chain: aNet.chain, switched: true })
    assert.equal(e.ledger.chainId, aNet.chain)
    assert.equal(e.status().network.devnet, false)
    await eventually('E follows A\'s chain', () => e.ledger.status().height >= 1 && e.ledger.status().height >= a.ledger.status().height - 2)
    // Now it follows a network: another one is refused, the same one is a no-op.
    const f = await peers.startNode()
    await assert.rejects(e.chain.join(formatLink({ kind: 'join', target: f.status().network.genesis, peers: [f.addresses()[0]] })), { name: 'NetworkMismatchError' })
    assert.deepEqual(await e.chain.join(code), { genesis: aNet.genesis, chain: aNet.chain, switched: false })
    await assert.rejects(e.chain.join('pv:content=' + aNet.genesis + '&peer=' + encodeURIComponent(aAddr)), { name: 'InvalidLinkError' })
    // It remembers the network: forcing a devnet of its own on that data dir is refused.
    await e.stop()
    const forced = await createNode(mergeConfig(defaultConfig(e.config.dataDir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, relay: { server: false }, ledger: { devnet: true } }))
    peers.nodes.push(forced)
    await assert.rejects(forced.start(), { name: 'NetworkMismatchError' })
    // A plain start rejoins it, its blocks of A's chain read back from that chain's own sublevel.
    const height = e.ledger.status().height
    const plain = await createNode(mergeConfig(defaultConfig(e.config.dataDir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, relay: { server: false } }))
    peers.nodes.push(plain)
    await plain.start()
    assert.equal(plain.ledger.chainId, aNet.chain)
    assert.equal(plain.status().network.genesis, aNet.genesis)
    assert.ok(plain.ledger.status().height >= height, `replayed ${plain.ledger.status().height} of ${height}`)
  })
})
