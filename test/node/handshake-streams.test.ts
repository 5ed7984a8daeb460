/**
 * The chain handshake's stream limit: a peer holding MAX_HANDSHAKE_STREAMS handshake streams open
 * on one connection gets the next one refused (reset, no answer), and the node stays up and
 * answers an honest handshake once those streams are gone. A real node in this process and a bare
 * libp2p peer on 127.0.0.1.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerverseNode } from '../../src/node/node.ts'
import { MAX_HANDSHAKE_BYTES, MAX_HANDSHAKE_STREAMS, NETWORK_PROTOCOL, decodeHandshake, encodeHandshake } from '../../src/node/network-id.ts'
import { LocalPeers, exchange, waiter, type Answer } from '../helpers/local-peers.ts'
import { varint } from '../helpers/bytes.ts'

const peers = new LocalPeers('handshake-streams')
const eventually = waiter({ timeoutMs: 30_000, intervalMs: 100 })

describe('chain handshake: concurrent inbound streams', { timeout: 120_000 }, () => {
  let a: PeerverseNode
  before(async () => { a = await peers.startNode() })
  after(async () => { await peers.stop() })

  it(`refuses handshake streams past MAX_HANDSHAKE_STREAMS (${MAX_HANDSHAKE_STREAMS}) on one connection and stays up`, async () => {
    const rogue = await peers.newPeer()
    const addr = multiaddr(a.addresses()[0])
    const ask = async (): Promise<Answer> => {
      const stream = await rogue.dialProtocol(addr, NETWORK_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      return await exchange(stream, MAX_HANDSHAKE_BYTES, AbortSignal.timeout(10_000), async lps => { await lps.write(encodeHandshake(undefined)) })
    }
    // Streams held open: each promises a frame of 100 bytes and sends none of it.
    const held: Stream[] = []
    for (let i = 0; i < MAX_HANDSHAKE_STREAMS; i++) {
      const stream = await rogue.dialProtocol(addr, NETWORK_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      stream.send(varint(100))
      held.push(stream)
    }
    assert.equal(rogue.getConnections().length, 1, 'every stream is on one connection')
    const refused = await ask()
    assert.notEqual(refused.end, 'eof', 'the stream past the limit is reset, not answered')
    assert.equal(refused.frames.length, 0)
    for (const s of held) s.abort(new Error('done'))
    // With the held streams gone, an honest ask on the same connection is answered with A's name.
    let answer: Answer | undefined
    await eventually('an honest handshake is answered again', async () => {
      answer = await ask().catch(() => undefined)
      return answer?.end === 'eof'
    })
    assert.deepEqual(decodeHandshake(answer!.frames[0]), { genesis: a.status().network.genesis, chain: a.status().network.chain })
    assert.equal(a.started, true)
  })
})
