/**
 * Reach on real NATs (the network-namespace testbed): peers in homes behind NAT routers find they
 * are behind NAT, reserve a relay slot, are dialled through it, and end up with a direct WebRTC connection where the NATs
 * allow hole punching (cone); behind a symmetric NAT they stay relayed; a peer whose relay dies
 * finds another through the DHT. Real `peerverse start` processes. Skips with the testbed's reason where namespaces cannot be made.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Testbed, testbedUnavailable, type NatKind } from '../../testbed/testbed.ts'
import { startNsPeer, type NsPeer } from '../../testbed/peer.ts'
import type { NodeStatus, PeerInfoView } from '../../src/node/node.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { waitFor } from '../helpers/cli-peer.ts'
import { UPGRADE_MAX_ATTEMPTS } from '../../src/net/limits.ts'

interface Reached { peer: NsPeer, startedAt: number, behindNatMs?: number, reservedMs?: number }

/** Polls a home peer's status until it is behind NAT with a relay slot, noting when each came. */
async function reachable (r: Reached): Promise<NodeStatus> {
  let last: NodeStatus | undefined
  try {
    return await waitFor(`${r.peer.host.name} behind NAT with a relay slot`, async () => {
      const s = last = await r.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      if (s.reach.reachability === 'behind-nat') r.behindNatMs ??= Date.now() - r.startedAt
      // A slot is usable once its plain relayed address is advertised (the WebRTC one may come first).
      if (s.reach.relayedAddresses.some(x => !x.includes('/webrtc'))) r.reservedMs ??= Date.now() - r.startedAt
      return r.behindNatMs != null && r.reservedMs != null && s.reach.reachability === 'behind-nat' && s.reach.relayedAddresses.some(x => !x.includes('/webrtc')) && s
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

/** Peers the home peers start from: a bootstrap and a relay peer on the internet, each public. */
async function twoHomes (t: TestContext, natA: NatKind, natB: NatKind): Promise<{ a: Reached, b: Reached, relay: NsPeer, boot: NsPeer } | undefined> {
  const reason = await testbedUnavailable()
  if (reason != null) { t.skip(reason); return undefined }
  const defer = cleanups(t)
  const tb = await Testbed.create({ publicHosts: 2, homes: [{ name: 'a', nat: natA, hosts: 1 }, { name: 'b', nat: natB, hosts: 1 }] })
  defer(async () => { await tb.destroy() })
  const started: NsPeer[] = []
  defer(async () => { for (const p of started.reverse()) await p.stop().catch(() => {}) })
  // The home peers know only the bootstrap: the relay peer they may hold a slot on is found through the DHT.
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
  // They may have met already (the DHT, gossip); either way a dials b through b's relay.
  // A dial through the relay can meet b's own dial to a, or an upgrade of a connection between them, closing under it: try again.
  const { peerId } = await waitFor('a connected to b through the relay', async () => await a.peer.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address: bRelayed }), 60_000, 500)
  assert.equal(peerId, b.peer.ready.peerId)
  // The relays are public: neither relay nor bootstrap believes it needs a relay.
  for (const p of [boot, relay]) {
    const s = await p.api.request<NodeStatus>('GET', '/api/v0/status')
    assert.equal(s.reach.reachability, 'public')
    assert.deepEqual(s.reach.relays, [])
  }
  return { a, b, relay, boot }
}

/** The ms from a relayed connection to a direct one, from whichever side made the upgrade. */
async function directAfterMs (a: NsPeer, b: NsPeer): Promise<number | undefined> {
  for (const p of [a, b]) {
    const s = await p.api.request<NodeStatus>('GET', '/api/v0/status')
    if (s.reach.upgrades.lastDirectAfterMs != null) return s.reach.upgrades.lastDirectAfterMs
  }
  return undefined
}

describe('reach behind real NATs', { timeout: 400_000 }, () => {
  it('two peers behind cone NATs get a direct WebRTC connection through the relay', async t => {
    const got = await twoHomes(t, 'cone', 'cone')
    if (got == null) return
    const { a, b } = got
    const direct = await waitFor('a direct WebRTC connection from a to b', async () => {
      const v = await peerView(a.peer, b.peer.ready.peerId)
      return v?.connections.find(c => c.transport === 'webrtc' && c.direct)
    }, 120_000, 100).catch(async err => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      throw new Error(`${(err as Error).message}: a's upgrades ${JSON.stringify(st.reach.upgrades)}, connections to b ${JSON.stringify((await peerView(a.peer, b.peer.ready.peerId))?.connections)}`)
    })
    assert.ok(direct.address.includes('/webrtc'))
    // Traffic takes it: the relayed connection is closed and a ping stream runs over what is left.
    await waitFor('the relayed connection closed', async () => {
      const v = await peerView(a.peer, b.peer.ready.peerId)
      return v != null && v.connections.length > 0 && v.connections.every(c => c.direct && c.transport === 'webrtc')
    }, 60_000, 100)
    const { rttMs } = await a.peer.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: b.peer.ready.peerId })
    assert.ok(rttMs >= 0)
    const v = await peerView(a.peer, b.peer.ready.peerId)
    assert.ok(v != null && v.connections.every(c => c.direct && c.transport === 'webrtc'), 'the ping ran over the WebRTC connection alone')
    const sa = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
    assert.ok(sa.connections.webrtc >= 1)
    const upgradeMs = await directAfterMs(a.peer, b.peer)
    assert.ok(upgradeMs != null, 'the time from the relayed connection to the direct one is recorded')
    t.diagnostic(`cone: start -> behind-nat ${a.behindNatMs} ms / ${b.behindNatMs} ms; start -> reservation ${a.reservedMs} ms / ${b.reservedMs} ms; relayed connection -> direct ${upgradeMs} ms`)
  })

  it('a peer behind a symmetric NAT and one behind a cone NAT stay relayed, and say so', async t => {
    const got = await twoHomes(t, 'symmetric', 'cone')
    if (got == null) return
    const { a, b } = got
    // Whichever side dialled the relayed connection tries the upgrade: wait until both are done trying.
    const both = await waitFor('the upgrade attempts to end', async () => {
      const st = await Promise.all([a.peer, b.peer].map(async p => await p.api.request<NodeStatus>('GET', '/api/v0/status')))
      const attempts = st.reduce((n, s) => n + s.reach.upgrades.attempts, 0)
      return st.every(s => s.reach.upgrades.inProgress === 0) && attempts > 0 && st
    }, 200_000, 250).catch(err => {
      throw new Error(`${(err as Error).message}; a's stderr: ${a.peer.stderr().slice(-1500)}; b's stderr: ${b.peer.stderr().slice(-1500)}`)
    })
    let attempts = 0
    for (const s of both) {
      assert.equal(s.reach.upgrades.succeeded, 0)
      assert.ok(s.reach.upgrades.attempts <= UPGRADE_MAX_ATTEMPTS, `no more than ${UPGRADE_MAX_ATTEMPTS} tries per peer: ${s.reach.upgrades.attempts}`)
      attempts += s.reach.upgrades.attempts
    }
    assert.ok(both.some(s => s.reach.upgrades.failed >= 1), 'the failed upgrade is in the status')
    // They still reach each other, through the relay alone.
    const bRelayed = (await b.peer.api.request<NodeStatus>('GET', '/api/v0/status')).reach.relayedAddresses.find(x => !x.includes('/webrtc'))
    assert.ok(bRelayed != null)
    const { rttMs } = await waitFor('a ping from a to b through the relay', async () => await a.peer.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: bRelayed }), 60_000, 500)
    assert.ok(rttMs >= 0)
    const v = await peerView(a.peer, b.peer.ready.peerId)
    assert.ok(v == null || v.connections.every(c => c.transport === 'relay' && !c.direct), `only relayed connections: ${JSON.stringify(v?.connections)}`)
    // No runaway: after the relayed ping each side is still within its bound.
    const again = await Promise.all([a.peer, b.peer].map(async p => await p.api.request<NodeStatus>('GET', '/api/v0/status')))
    for (const s of again) {
      assert.ok(s.reach.upgrades.attempts <= UPGRADE_MAX_ATTEMPTS, `no more than ${UPGRADE_MAX_ATTEMPTS} tries per peer: ${s.reach.upgrades.attempts}`)
      assert.equal(s.reach.upgrades.succeeded, 0)
    }
    t.diagnostic(`symmetric + cone: start -> behind-nat ${a.behindNatMs} ms / ${b.behindNatMs} ms; start -> reservation ${a.reservedMs} ms / ${b.reservedMs} ms; ${attempts} upgrade tries, none direct`)
  })

  it('a peer whose relay is killed finds another through the DHT and is reachable again', async t => {
    const reason = await testbedUnavailable()
    if (reason != null) { t.skip(reason); return }
    const defer = cleanups(t)
    const tb = await Testbed.create({ publicHosts: 3, homes: [{ name: 'a', nat: 'cone', hosts: 1 }, { name: 'c', nat: 'cone', hosts: 1 }] })
    defer(async () => { await tb.destroy() })
    const started: NsPeer[] = []
    defer(async () => { for (const p of started.reverse()) await p.stop().catch(() => {}) })
    // The bootstrap relays nothing: relays are found through the DHT.
    const boot = await startNsPeer(tb.internet[0], ['--public', '--dht-mode', 'server', '--devnet', '--no-relay-server'])
    started.push(boot)
    const relay1 = await startNsPeer(tb.internet[1], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', boot.addr])
    started.push(relay1)
    const a: Reached = { peer: await startNsPeer(tb.homes[0].hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr]), startedAt: Date.now() }
    started.push(a.peer)
    const first = await reachable(a)
    assert.deepEqual(first.reach.relays, [relay1.ready.peerId], 'the only relay there is')
    const relay2 = await startNsPeer(tb.internet[2], ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', boot.addr])
    started.push(relay2)
    await relay1.kill()
    const killedAt = Date.now()
    // The peer in the other home starts while a looks for another relay.
    const cStarting = startNsPeer(tb.homes[1].hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr]).then(p => { started.push(p); return p })
    cStarting.catch(() => {})
    const s = await waitFor('a holding a slot on relay 2', async () => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      return st.reach.relays.includes(relay2.ready.peerId) && st.reach.relayedAddresses.some(x => x.includes(relay2.ready.peerId) && !x.includes('/webrtc')) && st
    }, 120_000, 100).catch(async err => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      throw new Error(`${(err as Error).message}; a's reach ${JSON.stringify(st.reach)}`)
    })
    const failoverMs = Date.now() - killedAt
    assert.ok(!s.reach.relays.includes(relay1.ready.peerId))
    const through2 = s.reach.relayedAddresses.find(x => x.includes(relay2.ready.peerId) && !x.includes('/webrtc'))
    // A peer in another home dials a through relay 2 and a stream runs.
    const c = await cStarting
    const { peerId } = await c.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address: through2 })
    assert.equal(peerId, a.peer.ready.peerId)
    const { rttMs } = await c.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: a.peer.ready.peerId })
    assert.ok(rttMs >= 0)
    t.diagnostic(`relay killed -> slot on another relay ${failoverMs} ms`)
  })

  it('a peer whose only relay restarts holds a slot on it again and is reachable through it', async t => {
    const reason = await testbedUnavailable()
    if (reason != null) { t.skip(reason); return }
    const defer = cleanups(t)
    const tb = await Testbed.create({ publicHosts: 2, homes: [{ name: 'a', nat: 'cone', hosts: 1 }, { name: 'c', nat: 'cone', hosts: 1 }] })
    defer(async () => { await tb.destroy() })
    const started: NsPeer[] = []
    defer(async () => { for (const p of started.reverse()) await p.stop().catch(() => {}) })
    const boot = await startNsPeer(tb.internet[0], ['--public', '--dht-mode', 'server', '--devnet', '--no-relay-server'])
    started.push(boot)
    const relayArgs = ['--public', '--dht-mode', 'server', '--devnet', '--bootstrap', boot.addr]
    const relay = await startNsPeer(tb.internet[1], relayArgs)
    started.push(relay)
    const a: Reached = { peer: await startNsPeer(tb.homes[0].hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr]), startedAt: Date.now() }
    started.push(a.peer)
    const first = await reachable(a)
    assert.deepEqual(first.reach.relays, [relay.ready.peerId])
    await relay.kill()
    await waitFor('a has lost its slot', async () => !(await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')).reach.relays.includes(relay.ready.peerId), 60_000, 100)
    // The same relay again: the same key (its data dir) at the same address.
    const again = await startNsPeer(tb.internet[1], relayArgs, { dataDir: relay.dataDir })
    started.push(again)
    assert.equal(again.ready.peerId, relay.ready.peerId)
    const restartedAt = Date.now()
    // The peer in the other home starts while a takes a slot on the restarted relay.
    const cStarting = startNsPeer(tb.homes[1].hosts[0], ['--listen', '/webrtc', '--devnet', '--bootstrap', boot.addr]).then(p => { started.push(p); return p })
    cStarting.catch(() => {})
    const s = await waitFor('a holding a slot on the restarted relay', async () => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      return st.reach.relays.includes(again.ready.peerId) && st.reach.relayedAddresses.some(x => x.includes(again.ready.peerId) && !x.includes('/webrtc')) && st
    }, 120_000, 100).catch(async err => {
      const st = await a.peer.api.request<NodeStatus>('GET', '/api/v0/status')
      throw new Error(`${(err as Error).message}; a's reach ${JSON.stringify(st.reach)}`)
    })
    const backMs = Date.now() - restartedAt
    const through = s.reach.relayedAddresses.find(x => x.includes(again.ready.peerId) && !x.includes('/webrtc'))
    const c = await cStarting
    const { peerId } = await waitFor('c connected to a through the restarted relay', async () => await c.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address: through }), 60_000, 500)
    assert.equal(peerId, a.peer.ready.peerId)
    const { rttMs } = await c.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: a.peer.ready.peerId })
    assert.ok(rttMs >= 0)
    t.diagnostic(`relay restarted -> slot on it again ${backMs} ms`)
  })
})
