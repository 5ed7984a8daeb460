/** The reach and connections lines of `peerverse status`, from a status object. */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { reachLines } from '../../src/cli/node.ts'
import type { NodeStatus } from '../../src/node/node.ts'

type Lines = Pick<NodeStatus, 'reach' | 'connections'>

describe('peerverse status: reach and connections', () => {
  it('counts WebRTC connections among the direct ones, as the status does', () => {
    const status = { connections: { total: 5, direct: 4, relayed: 1, webrtc: 1 } } as unknown as Lines
    assert.deepEqual(reachLines(status), ['connections: 5 (4 direct, 1 of them WebRTC; 1 relayed)'])
    const plain = { connections: { total: 2, direct: 2, relayed: 0, webrtc: 0 } } as unknown as Lines
    assert.deepEqual(reachLines(plain), ['connections: 2 (2 direct)'])
  })

  it('says a peer behind NAT with no relay is not reachable, and names its relays when it has some', () => {
    const reach = { reachability: 'behind-nat', relays: [], relayedAddresses: [], publicAddresses: [] }
    const none = reachLines({ reach } as unknown as Lines)
    assert.equal(none.length, 1)
    assert.match(none[0], /^reach: +behind NAT, no relay yet: not reachable$/)
    const one = reachLines({ reach: { ...reach, relays: ['12D3KooWAbCdEf'] } } as unknown as Lines)
    assert.match(one[0], /behind NAT, reachable through 1 relay \(12D3Ko…\)$/)
  })
})
