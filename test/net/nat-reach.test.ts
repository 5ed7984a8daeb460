/**
 * Reach on real NATs (the network-namespace testbed): peers in homes behind NAT routers find they
 * are behind NAT, reserve a relay slot, are dialled through it, and end up with a direct WebRTC connection where the NATs
 * allow hole punching (cone); behind symmetric NATs they stay relayed. Real `peerverse start`
 * processes. Skips with the testbed's reason where namespaces cannot be made.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Testbed, testbedUnavailable, type NatKind } from '../../testbed/testbed.ts'
import { startNsPeer, type NsPeer } from '../../testbed/peer.ts'
import type { NodeStatus, PeerInfoView } from '../../src/node/node.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { waitFor } from '../helpers/cli-peer.ts'

interface Reached { peer: NsPeer, startedAt: number, behindNatMs?: number, reservedMs?: number }

/** Polls a home peer's status until it is behind NAT with a relay slot, noting when each came. */
async function reachable (r: Reached): Promise<NodeStatus> {
  let last: NodeStatus | undefined
  try {
    return await waitFor(`${r.peer.host.name} behind NAT with a relay slot`, async () => {
      const s = last = await r.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      if (s.reach.reachability === 'behind-nat') r.behindNatMs ??= Date.now() - r.startedAt
      if (s.reach.relays.length > 0) r.reservedMs ??= Date.now() - r.startedAt
      return r.behindNatMs != null && r.reservedMs != null && s
    }, 120_000, 100)
  } catch (err) {
    const peers = await r.peer.api.request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers').catch(() => undefined)
    throw new Error(`${(err as Error).message}; last reach ${JSON.stringify(last?.reach)}, addresses ${JSON.stringify(last?.addresses)}, peers ${JSON.stringify(peers)}`)
  }
}

async function peerView (p: NsPeer, id: string): Promise<PeerInfoView | undefined> {
  const { peers } = await p.api.request<{ peers: PeerInfoView[] }>('GET', '/api/v0/peers')
  return peers.find(x => x.peerId === id)
}

async function twoHomes (t: TestContext, nat: NatKind): Promise<{ a: Reached, b: Reached, relay: NsPeer, boot: NsPeer, firstRelayedAt: number } | undefined> {
  const reason = await testbedUnavailable()
  if (reason != null) { t.skip(reason); return undefined }
  const defer = cleanups(t)
  const tb = await Testbed.create({ publicHosts: 2, homes: [{ name: 'a', nat, hosts: 1 }, { name: 'b', nat, hosts: 1 }] })
  defer(async () => { await tb.destroy() })
  const started: NsPeer[] = []
  defer(async () => { for (const p of started.reverse()) await p.stop().catch(() => {}) })
  // The home peers know only the bootstrap: the relay peer they must hold a slot on is found through the DHT.
  const boot = await startNsPeer(tb.internet[0], ['--public', '--dht-mode', 'server', '--devnet'])
  started.push(boot)
  const relay = await startNsPeer(tb.internet[1], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', boot.addr])
  started.push(relay)
  const home = async (h: typeof tb.homes[number]): Promise<Reached> => {
    const startedAt = Date.now()
    const peer = await startNsPeer(h.hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr])
    started.push(peer)
    return { peer, startedAt }
  }
  const [a, b] = await Promise.all([home(tb.homes[0]), home(tb.homes[1])])
  const relayId = relay.ready.peerId
  const [, sb] = await Promise.all([reachable(a), reachable(b)])
  // Either public peer relays: the first one found holds the slot.
  assert.ok(sb.reach.relays.every(id => id === relayId || id === boot.ready.peerId))
  const bRelayed = sb.reach.relayedAddresses.find(x => x.includes('/p2p-circuit') && !x.includes('/webrtc'))
  assert.ok(bRelayed != null, 'b advertises an address through the relay')
  const { peerId } = await a.peer.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address: bRelayed })
  const firstRelayedAt = Date.now()
  assert.equal(peerId, b.peer.ready.peerId)
  // The relays are public: neither relay nor bootstrap believes it needs a relay.
  for (const p of [boot, relay]) {
    const s = await p.api.request<NodeStatus>('GET', '/api/v0/status')
    assert.equal(s.reach.reachability, 'public')
    assert.deepEqual(s.reach.relays, [])
  }
  return { a, b, relay, boot, firstRelayedAt }
}

describe('reach behind real NATs', { timeout: 400_000 }, () => {
  // Not passing yet: both peers find they are behind NAT and hold relay slots within seconds and
  // connect through the relay, but no WebRTC connection has come up through the two NATs yet.
  it('two peers behind cone NATs get a direct WebRTC connection through the relay', { todo: 'WebRTC through two testbed NATs not yet up' }, async t => {
    const got = await twoHomes(t, 'cone')
    if (got == null) return
    const { a, b, firstRelayedAt } = got
    const direct = await waitFor('a direct WebRTC connection from a to b', async () => {
      const v = await peerView(a.peer, b.peer.ready.peerId)
      return v?.connections.find(c => c.transport === 'webrtc' && c.direct)
    }, 120_000, 100).catch(async err => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      throw new Error(`${(err as Error).message}: a's upgrades ${JSON.stringify(st.reach.upgrades)}, connections to b ${JSON.stringify((await peerView(a.peer, b.peer.ready.peerId))?.connections)}; ${a.peer.stderr().split('\n').filter(l => /webrtc|ice|ICE/.test(l)).slice(-15).join(' | ')}`)
    })
    const upgradeMs = Date.now() - firstRelayedAt
    assert.ok(direct.address.includes('/webrtc'))
    // Traffic takes it: the relayed connection is closed and a ping runs over what is left.
    await waitFor('the relayed connection closed', async () => {
      const v = await peerView(a.peer, b.peer.ready.peerId)
      return v != null && v.connections.every(c => c.direct)
    }, 60_000, 100)
    const { rttMs } = await a.peer.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: b.peer.ready.peerId })
    assert.ok(rttMs >= 0)
    const sa = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
    assert.ok(sa.connections.webrtc >= 1)
    t.diagnostic(`cone: start -> behind-nat ${a.behindNatMs} ms / ${b.behindNatMs} ms; start -> reservation ${a.reservedMs} ms / ${b.reservedMs} ms; first relayed connection -> direct ${upgradeMs} ms`)
  })

  // Not passing yet: a relayed address of b was not always found in its status when a dialled.
  it('two peers behind symmetric NATs stay relayed, and say so', { todo: 'relayed address missing from status in one run' }, async t => {
    const got = await twoHomes(t, 'symmetric')
    if (got == null) return
    const { a, b } = got
    const s = await waitFor('a\'s upgrade attempts to end', async () => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      return st.reach.upgrades.inProgress === 0 && st.reach.upgrades.attempts > 0 && st
    }, 200_000, 250)
    assert.equal(s.reach.upgrades.succeeded, 0)
    assert.ok(s.reach.upgrades.failed >= 1)
    const v = await peerView(a.peer, b.peer.ready.peerId)
    assert.ok(v != null && v.connections.length > 0 && v.connections.every(c => c.transport === 'relay' && !c.direct), 'only relayed connections')
    const { rttMs } = await a.peer.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: b.peer.ready.peerId })
    assert.ok(rttMs >= 0)
    t.diagnostic(`symmetric: start -> behind-nat ${a.behindNatMs} ms / ${b.behindNatMs} ms; start -> reservation ${a.reservedMs} ms / ${b.reservedMs} ms; ${s.reach.upgrades.attempts} upgrade tries, none direct`)
  })
})
