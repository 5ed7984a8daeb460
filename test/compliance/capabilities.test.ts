/**
 * One compliance suite, run against every capability factory: each is built over ports of a real
 * libp2p node and a real LevelDB, then started and stopped twice, stopped before it ever started,
 * and checked to hold nothing after stop (no protocol handler, no gossip subscription, no peer or
 * subscription listener), both as the ports saw it and as libp2p itself does.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPeerBinding } from '../../src/identity/binding.ts'
import { initIdentity, type Identity } from '../../src/identity/keystore.ts'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { Store } from '../../src/store/store.ts'
import { Blockstore } from '../../src/content/blockstore.ts'
import { content } from '../../src/content/index.ts'
import { devnetGenesis } from '../../src/ledger/genesis.ts'
import { ledger } from '../../src/ledger/index.ts'
import { FeedStore, social } from '../../src/social/index.ts'
import { space } from '../../src/space/index.ts'
import { directory } from '../../src/directory/index.ts'
import { recordingPorts, type RecordingPorts } from '../helpers/ports.ts'

interface Startable {
  start: () => Promise<void>
  stop: () => Promise<void>
}

interface Env {
  net: Network
  ports: RecordingPorts
  /** A fresh store for each capability built (a sublevel can be taken once), and its directory. */
  store: Store
  storeDir: string
  identity: Identity
  binding: Uint8Array
}

/** Each capability, built from its factory with just the components it asks for. */
const CAPABILITIES: Record<string, (env: Env) => Startable | Promise<Startable>> = {
  content: async ({ ports, store, storeDir }) => content({})({
    protocols: ports.protocols,
    routing: ports.routing,
    onRejected: () => {},
    blockstore: await Blockstore.open(store.sublevel('content'), storeDir, 64 * 1024 * 1024)
  }),
  ledger: ({ ports, store, identity }) => ledger({})({
    gossip: ports.gossip,
    protocols: ports.protocols,
    onRejected: () => {},
    didOf: () => undefined,
    identity: { did: identity.did, key: identity.userKey },
    store: store.sublevel('ledger'),
    genesis: devnetGenesis([identity.did])
  }),
  social: ({ ports, store, identity }) => social({})({
    gossip: ports.gossip,
    protocols: ports.protocols,
    onRejected: () => {},
    identity: { did: identity.did, key: identity.userKey },
    store: new FeedStore(store.sublevel('social'))
  }),
  space: ({ ports, store, identity, binding }) => space({})({
    gossip: ports.gossip,
    protocols: ports.protocols,
    routing: ports.routing,
    onRejected: () => {},
    identity: { did: identity.did, key: identity.userKey, binding },
    store: store.sublevel('space'),
    parcels: () => []
  }),
  directory: ({ ports, store, identity }) => directory({})({
    gossip: ports.gossip,
    protocols: ports.protocols,
    routing: ports.routing,
    onRejected: () => {},
    identity: { did: identity.did, key: identity.userKey },
    store: store.sublevel('directory'),
    spaces: { descriptor: () => undefined, present: () => undefined },
    social: { isBlocked: () => false }
  })
}

describe('every capability factory', () => {
  let dir: string
  let env: Env
  let baseProtocols: string[]
  let baseTopics: string[]
  const stores: Store[] = []

  /** Builds a capability over the shared ports and a store of its own. */
  async function build (make: (env: Env) => Startable | Promise<Startable>): Promise<Startable> {
    const storeDir = join(dir, `store-${stores.length}`)
    const store = await Store.open(storeDir)
    stores.push(store)
    return await make({ ...env, store, storeDir })
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerverse-compliance-'))
    const identity = await initIdentity(dir)
    const net = await createNetwork({ privateKey: identity.peerKey, listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false })
    await net.start()
    const binding = (await createPeerBinding(identity.userKey, net.peerId.toString())).bytes
    env = { net, ports: recordingPorts(net), store: undefined as unknown as Store, storeDir: dir, identity, binding }
    baseProtocols = net.getProtocols()
    baseTopics = net.services.pubsub.getTopics()
  })

  after(async () => {
    env?.ports.close()
    await env?.net.stop()
    for (const s of stores) await s.close()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  function assertHoldsNothing (name: string): void {
    assert.ok(env.ports.empty(), `${name} still holds ${env.ports.describe()}`)
    assert.deepEqual(env.net.getProtocols().sort(), [...baseProtocols].sort(), `${name} left protocol handlers in libp2p`)
    assert.deepEqual(env.net.services.pubsub.getTopics().sort(), [...baseTopics].sort(), `${name} left gossip subscriptions`)
  }

  for (const [name, make] of Object.entries(CAPABILITIES)) {
    describe(name, () => {
      it('stops safely before it ever started', async () => {
        const cap = await build(make)
        await cap.stop()
        await cap.stop()
        assertHoldsNothing(name)
      })

      it('starts and stops twice each, and holds nothing after stop', async () => {
        const cap = await build(make)
        await cap.start()
        await cap.start()
        assert.ok(env.ports.held.handlers.size + env.ports.held.subscriptions.size + env.ports.held.listeners > 0, `${name} took nothing from its ports while started`)
        await cap.stop()
        await cap.stop()
        assertHoldsNothing(name)
      })

      it('can be started again after a stop', async () => {
        const cap = await build(make)
        await cap.start()
        await cap.stop()
        await cap.start()
        await cap.stop()
        assertHoldsNothing(name)
      })
    })
  }
})
