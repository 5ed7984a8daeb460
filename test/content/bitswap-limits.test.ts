/**
 * Bitswap against peers that speak it by hand (bare libp2p networks in this process, on
 * 127.0.0.1): a lying peer that answers want-block with bytes that do not hash to the CID is caught
 * and banned, nothing it sent is stored, and the file then comes from an honest holder; wantlists
 * and messages past the limits are refused with their named errors.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import * as lp from 'it-length-prefixed'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import {
  BITSWAP_120, BITSWAP_MAX_MESSAGE_BYTES, BITSWAP_MAX_STREAMS_PER_CONNECTION, BITSWAP_MAX_WANTLIST_ENTRIES, cidPrefix, decodeBitswap, encodeBitswap,
  type WantEntry
} from '../../src/content/bitswap.ts'
import type { Network } from '../../src/net/network.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seededBytes } from '../helpers/random.ts'

const eventually = waiter({ timeoutMs: 30_000, intervalMs: 50 })
const MiB = 1024 * 1024

function addrOf (node: PeerverseNode): string {
  return node.net.getMultiaddrs().find(a => a.toString().includes('/tcp/'))!.toString()
}

async function send (stream: Stream, msg: Uint8Array): Promise<void> {
  if (!stream.send(lp.encode.single(msg, { maxDataLength: 2 * BITSWAP_MAX_MESSAGE_BYTES }))) await stream.onDrain()
}

/** A bare peer that answers Bitswap by hand: HAVE to every want-have, and `answer(cid)` to every want-block. */
async function handBitswap (net: Network, answer: (cid: CID) => Uint8Array): Promise<{ asked: string[] }> {
  const asked: string[] = []
  await net.handle(BITSWAP_120, (stream, connection) => {
    void (async () => {
      for await (const frame of lp.decode(stream, { maxDataLength: BITSWAP_MAX_MESSAGE_BYTES })) {
        const msg = decodeBitswap(frame.subarray())
        const wants = (msg.wantlist?.entries ?? []).filter(e => !e.cancel)
        if (wants.length === 0) continue
        const out = await net.dialProtocol(connection.remotePeer, BITSWAP_120)
        for (const e of wants) {
          asked.push(`${e.wantType}:${e.cid.toString()}`)
          await send(out, e.wantType === 'have'
            ? encodeBitswap({ presences: [{ cid: e.cid, have: true }] })
            : encodeBitswap({ blocks: [{ prefix: cidPrefix(e.cid), data: answer(e.cid) }] }))
        }
        await out.close().catch(() => {})
      }
    })().catch(() => {})
  })
  return { asked }
}

test('a Bitswap peer that answers with bytes that do not match the CID is banned, and nothing it sent is stored', async t => {
  const peers = new LocalPeers('bitswap-liar')
  t.after(async () => { await peers.stop() })
  const [node, holder] = await Promise.all([
    peers.startNode({ content: { noHoldersTimeoutMs: 4_000 } }),
    peers.startNode()
  ])
  const { cid } = await holder.content.add(seededBytes(3 * MiB, 3))
  const liar = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
  const liarId = liar.peerId.toString()
  const { asked } = await handBitswap(liar, c => seededBytes(64, c.bytes.length))
  await liar.dial((await import('@multiformats/multiaddr')).multiaddr(addrOf(node)))

  // Only the liar is connected: the fetch asks it over Bitswap, catches the lie and finds no one else.
  await assert.rejects(node.content.fetch(cid), (err: Error) => err.name === 'NoProvidersError')
  assert.ok(asked.some(a => a.startsWith('block:')), `the liar was asked for a block (${asked.join(', ')})`)
  assert.equal(node.content.isBanned(liarId), true)
  assert.equal(node.content.has(cid), false)
  const rejections = peers.rejections.get(node)!.filter(r => r.peerId === liarId)
  assert.ok(rejections.some(r => r.error.startsWith('BadBlockError')), JSON.stringify(rejections))
  await eventually('the liar is disconnected', () => node.net.getConnections(peerIdFromString(liarId)).length === 0)

  // An honest holder then serves the whole file.
  await node.net.dial((await import('@multiformats/multiaddr')).multiaddr(addrOf(holder)))
  const stat = await node.content.fetch(cid)
  assert.equal(stat.localBlocks, stat.blocks)
})

test('wantlists and messages past the limits are refused with their named errors', async t => {
  const peers = new LocalPeers('bitswap-limits')
  t.after(async () => { await peers.stop() })
  const node = await peers.startNode()
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { cid } = await node.content.add(seededBytes(4096, 4))
  const rejections = peers.rejections.get(node)!
  const wants = (n: number, seed: number): WantEntry[] => Array.from({ length: n }, (_, i) => ({
    cid: CID.createV1(0x55, Digest.create(0x12, seededBytes(32, seed * 100_000 + i))),
    priority: 1,
    cancel: false,
    wantType: 'block' as const,
    sendDontHave: false
  }))
  const rejected = async (peer: string, name: string): Promise<void> => {
    await eventually(`${name} reported`, () => rejections.some(r => r.peerId === peer && r.error.startsWith(name)))
  }

  // A wantlist past BITSWAP_MAX_WANTLIST_ENTRIES.
  const a = await peers.newPeer()
  const sa = await a.dialProtocol(multiaddr(addrOf(node)), BITSWAP_120)
  await send(sa, encodeBitswap({ wantlist: { entries: wants(BITSWAP_MAX_WANTLIST_ENTRIES, 1), full: false } }))
  await eventually('the full wantlist is kept', () => node.content.bitswapWantlistSize(a.peerId.toString()) === BITSWAP_MAX_WANTLIST_ENTRIES)
  await send(sa, encodeBitswap({ wantlist: { entries: wants(1, 2), full: false } }))
  await rejected(a.peerId.toString(), 'BitswapWantlistFullError')
  assert.equal(node.content.bitswapWantlistSize(a.peerId.toString()), BITSWAP_MAX_WANTLIST_ENTRIES)

  // New wants faster than BITSWAP_WANTS_PER_PEER_PER_SECOND.
  const b = await peers.newPeer()
  const sb = await b.dialProtocol(multiaddr(addrOf(node)), BITSWAP_120)
  const frames: Uint8Array[] = []
  for (let round = 0; round < 6; round++) {
    // A full wantlist each time: the last one's wants are replaced, so only the rate is passed.
    frames.push(encodeBitswap({ wantlist: { entries: wants(BITSWAP_MAX_WANTLIST_ENTRIES, 10 + round), full: true } }))
  }
  for (const f of frames) await send(sb, f)
  await rejected(b.peerId.toString(), 'BitswapRateLimitError')

  // A message over BITSWAP_MAX_MESSAGE_BYTES.
  const c = await peers.newPeer()
  const sc = await c.dialProtocol(multiaddr(addrOf(node)), BITSWAP_120)
  await send(sc, encodeBitswap({ blocks: [{ prefix: cidPrefix(cid), data: new Uint8Array(BITSWAP_MAX_MESSAGE_BYTES) }] }))
  await rejected(c.peerId.toString(), 'BitswapMessageTooLargeError')

  // Malformed bytes.
  const d = await peers.newPeer()
  const sd = await d.dialProtocol(multiaddr(addrOf(node)), BITSWAP_120)
  await send(sd, new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))
  await rejected(d.peerId.toString(), 'BitswapProtocolError')

  // Streams past BITSWAP_MAX_STREAMS_PER_CONNECTION on one connection: the one past it is refused.
  const e = await peers.newPeer()
  const conn = await e.dial(multiaddr(addrOf(node)))
  const open: Stream[] = []
  let refused: Error | undefined
  for (let i = 0; i <= BITSWAP_MAX_STREAMS_PER_CONNECTION && refused == null; i++) {
    try {
      const s = await conn.newStream(BITSWAP_120)
      open.push(s)
      await send(s, encodeBitswap({ wantlist: { entries: [], full: false } }))
    } catch (err) {
      refused = err as Error
    }
  }
  if (refused == null) {
    // The last stream may be reset only once the node sees it.
    const lastStream = open[open.length - 1]
    await eventually('the stream past the limit is reset', () => lastStream.status !== 'open')
  }
  assert.ok(open.length >= BITSWAP_MAX_STREAMS_PER_CONNECTION, `only ${open.length} streams opened before one was refused (${refused?.name})`)

  // None of this stopped the node serving an honest Bitswap peer.
  const honest = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
  const got: string[] = []
  await honest.handle(BITSWAP_120, stream => {
    void (async () => {
      for await (const frame of lp.decode(stream, { maxDataLength: BITSWAP_MAX_MESSAGE_BYTES })) {
        for (const blk of decodeBitswap(frame.subarray()).blocks) got.push(String(blk.data.length))
      }
    })().catch(() => {})
  })
  const sh = await honest.dialProtocol(multiaddr(addrOf(node)), BITSWAP_120)
  await send(sh, encodeBitswap({ wantlist: { entries: [{ cid, priority: 1, cancel: false, wantType: 'block', sendDontHave: true }], full: false } }))
  await eventually('the honest peer gets the block', () => got.length === 1)
})

test('identify answers the standard id for stock libp2p programs, while our own peers identify each other on ours alone', async t => {
  const peers = new LocalPeers('bitswap-identify')
  t.after(async () => { await peers.stop() })
  const { multiaddr } = await import('@multiformats/multiaddr')
  const [a, b] = await Promise.all([peers.startNode(), peers.startNode()])
  const standard: string[] = []
  for (const n of [a, b]) {
    n.net.use('/ipfs/id/1.0.0', (stream, connection, next) => { standard.push(connection.remotePeer.toString()); next(stream, connection) })
  }
  await b.net.dial(multiaddr(addrOf(a)))
  // (A protocol a peer opened a stream on is recorded for it too: the Bitswap id comes only from identify.)
  await eventually('b has identified a', async () => (await b.net.peerStore.get(a.net.peerId)).protocols.includes(BITSWAP_120))
  await eventually('a has identified b', async () => (await a.net.peerStore.get(b.net.peerId)).protocols.includes(BITSWAP_120))
  const offered = (await b.net.peerStore.get(a.net.peerId)).protocols
  for (const p of ['/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0', BITSWAP_120]) assert.ok(offered.includes(p), `${p} in ${offered.join(' ')}`)
  assert.equal(standard.length, 0, 'our peers asked each other on the standard id')

  // A stock libp2p node (identify at its defaults: /ipfs/id/1.0.0) completes identify with us.
  const { createLibp2p } = await import('libp2p')
  const { tcp } = await import('@libp2p/tcp')
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { identify, identifyPush } = await import('@libp2p/identify')
  const stock = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify(), identifyPush: identifyPush() } })
  t.after(async () => { await stock.stop() })
  await stock.dial(multiaddr(addrOf(a)))
  await eventually('the stock node has identified us', async () => standard.includes(stock.peerId.toString()) &&
    (await stock.peerStore.get(a.net.peerId)).protocols.includes(BITSWAP_120))
  // ... and we it, on the standard id (it lacks ours).
  await eventually('we have identified the stock node', async () => (await a.net.peerStore.get(stock.peerId)).metadata.has('AgentVersion'))
  // When our protocols change, the stock node is told on the standard push.
  await a.net.handle('/peerverse/test-push/1.0.0', () => {})
  await eventually('the stock node hears of our new protocol', async () => (await stock.peerStore.get(a.net.peerId)).protocols.includes('/peerverse/test-push/1.0.0'))
})

test('the Bitswap codec reads what it writes, builds a block\'s CID from its bytes, and refuses malformed input', async () => {
  const { blockCid, BitswapProtocolError } = await import('../../src/content/bitswap.ts')
  const { sha256 } = await import('multiformats/hashes/sha2')
  const data = seededBytes(1000, 7)
  const cid = CID.createV1(0x55, await sha256.digest(data))
  const entries: WantEntry[] = [
    { cid, priority: 5, cancel: false, wantType: 'have', sendDontHave: true },
    { cid, priority: 1, cancel: true, wantType: 'block', sendDontHave: false }
  ]
  const bytes = encodeBitswap({ wantlist: { entries, full: true }, blocks: [{ prefix: cidPrefix(cid), data }], presences: [{ cid, have: false }], pendingBytes: 3 })
  const msg = decodeBitswap(bytes)
  assert.equal(msg.wantlist?.full, true)
  assert.deepEqual(msg.wantlist?.entries.map(e => [e.cid.toString(), e.priority, e.cancel, e.wantType, e.sendDontHave]),
    entries.map(e => [e.cid.toString(), e.priority, e.cancel, e.wantType, e.sendDontHave]))
  assert.equal(msg.presences[0].have, false)
  assert.equal(msg.pendingBytes, 3)
  assert.equal((await blockCid(msg.blocks[0])).toString(), cid.toString())
  // Other bytes under the same prefix name another CID: never the one asked for.
  assert.notEqual((await blockCid({ prefix: cidPrefix(cid), data: seededBytes(1000, 8) })).toString(), cid.toString())
  assert.throws(() => decodeBitswap(bytes.subarray(0, bytes.length - 5)), BitswapProtocolError)
  assert.throws(() => decodeBitswap(encodeBitswap({ wantlist: { entries, full: false } }), 1), BitswapProtocolError)
  await assert.rejects(blockCid({ prefix: new Uint8Array([1, 0x55, 0x00, 4]), data: new Uint8Array(4) }), BitswapProtocolError)
})

test('a want for a block the peer lacks is answered DONT_HAVE when asked to, else with the block once it arrives', async t => {
  const peers = new LocalPeers('bitswap-wait')
  t.after(async () => { await peers.stop() })
  const node = await peers.startNode()
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { sha256 } = await import('multiformats/hashes/sha2')
  const later = seededBytes(2048, 9)
  const missing = seededBytes(2048, 10)
  const laterCid = CID.createV1(0x55, await sha256.digest(later))
  const missingCid = CID.createV1(0x55, await sha256.digest(missing))
  const wanter = await peers.newPeer(['/ip4/127.0.0.1/tcp/0'])
  const blocks: string[] = []
  const dontHave: string[] = []
  await wanter.handle(BITSWAP_120, stream => {
    void (async () => {
      for await (const frame of lp.decode(stream, { maxDataLength: BITSWAP_MAX_MESSAGE_BYTES })) {
        const msg = decodeBitswap(frame.subarray())
        for (const b of msg.blocks) blocks.push(String(b.data.length))
        for (const p of msg.presences) if (!p.have) dontHave.push(p.cid.toString())
      }
    })().catch(() => {})
  })
  const s = await wanter.dialProtocol(multiaddr(addrOf(node)), BITSWAP_120)
  await send(s, encodeBitswap({
    wantlist: {
      entries: [
        { cid: missingCid, priority: 1, cancel: false, wantType: 'block', sendDontHave: true },
        { cid: laterCid, priority: 1, cancel: false, wantType: 'block', sendDontHave: false }
      ],
      full: false
    }
  }))
  await eventually('DONT_HAVE for the block asked with send-dont-have', () => dontHave.includes(missingCid.toString()))
  assert.equal(blocks.length, 0)
  assert.equal(node.content.bitswapWantlistSize(wanter.peerId.toString()), 1)
  await node.content.add(later)
  await eventually('the block is sent once it arrives', () => blocks.length === 1)
  assert.equal(node.content.bitswapWantlistSize(wanter.peerId.toString()), 0)
})
