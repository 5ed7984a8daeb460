/**
 * Ledger faults between real `peerverse` validator processes on loopback. A byzantine validator
 * (this test process, holding the fourth validator's key) proposes two different valid blocks in
 * its slots and signs two conflicting prevotes and precommits in every round it sees: the three
 * honest validators keep committing the same blocks, and each of them records its double votes as
 * evidence (whoever catches one gossips it). A 2|2 partition (each side refuses the other through
 * POST /api/v0/net/deny) halts commits, since neither side holds more than 2/3 of the power, and
 * after healing all four go on with one chain.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import * as dagCbor from '@ipld/dag-cbor'
import { multiaddr } from '@multiformats/multiaddr'
import { initIdentity, type Identity } from '../../src/identity/keystore.ts'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { devnetGenesis, faucetDid, faucetKey, genesisJson } from '../../src/ledger/genesis.ts'
import { decodeBlock, decodeConsensusMessage, signProposal, signVote } from '../../src/ledger/chain.ts'
import { proposer } from '../../src/ledger/consensus.ts'
import { blockHash, buildBlock, checkBlock, genesisState, type BlockHeader, type Genesis, type LedgerState } from '../../src/ledger/state.ts'
import { signTx } from '../../src/ledger/tx.ts'
import { ledgerTopic, type LedgerTopic } from '../../src/ledger/index.ts'
import { PeerSet, waitFor, type CliPeer } from '../helpers/cli-peer.ts'

const set = new PeerSet()

interface Status { chain: string, height: number }
interface Evidence { validator: string, height: number, round: number, type: string }

async function chain (p: CliPeer): Promise<Status> {
  return await p.api.request<Status>('GET', '/api/v0/ledger/status')
}

async function header (p: CliPeer, height: number): Promise<BlockHeader> {
  return (await p.api.request<{ header: BlockHeader }>('GET', `/api/v0/ledger/block/${height}`)).header
}

/** Every block up to the lowest head is the same (hash and state root) on all of `peers`. */
async function assertOneChain (peers: CliPeer[]): Promise<number> {
  const h = Math.min(...(await Promise.all(peers.map(chain))).map(s => s.height))
  for (let height = 1; height <= h; height++) {
    const ref = await header(peers[0], height)
    for (const p of peers.slice(1)) {
      const other = await header(p, height)
      assert.equal(blockHash(other), blockHash(ref), `block ${height}`)
      assert.equal(other.stateRoot, ref.stateRoot, `state root ${height}`)
    }
  }
  return h
}

/** Starts `n` validators on a fresh genesis naming `n + byzantine`; the last `byzantine` identities are not started. */
async function startValidators (n: number, byzantine = 0): Promise<{ vals: CliPeer[], ids: Identity[], genesis: Genesis }> {
  const dir = await set.tempDir()
  const ids: Identity[] = []
  for (let i = 0; i < n + byzantine; i++) ids.push(await initIdentity(join(dir, `v${i}`)))
  const genesis = devnetGenesis(ids.map(i => i.did))
  const genesisPath = join(dir, 'genesis.json')
  await writeFile(genesisPath, genesisJson(genesis))
  const vals = [await set.start({ dataDir: join(dir, 'v0'), extra: ['--genesis', genesisPath] })]
  vals.push(...await Promise.all(Array.from({ length: n - 1 }, async (_, k) => await set.start({ dataDir: join(dir, `v${k + 1}`), bootstrap: [vals[0].addr], extra: ['--genesis', genesisPath] }))))
  return { vals, ids, genesis }
}

/** Faucet transfers through the validators' submit endpoint; returns the transaction ids. */
async function load (vals: CliPeer[], count: number, pauseMs = 0): Promise<string[]> {
  const { chain: id } = await chain(vals[0])
  let { nonce } = await vals[0].api.request<{ nonce: number }>('GET', `/api/v0/ledger/balance/${encodeURIComponent(faucetDid(id))}`)
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const tx = await signTx(faucetKey(id), { chain: id, nonce: nonce++, fee: 1n, kind: 'transfer', to: vals[i % vals.length].ready.did, amount: 10n })
    // As a client does: a chain at capacity (MempoolFullError) is tried again after a while.
    await waitFor(`tx ${i} accepted`, async () => {
      try {
        await vals[i % vals.length].api.request('POST', '/api/v0/ledger/submit', { tx: Buffer.from(tx.bytes).toString('base64') })
        return true
      } catch (err) {
        if ((err as { code?: string }).code !== 'MempoolFullError') throw err
        return false
      }
    }, 60_000, 200)
    ids.push(tx.id)
    if (pauseMs > 0) await new Promise(resolve => setTimeout(resolve, pauseMs))
  }
  return ids
}

const hex64 = (): string => randomBytes(32).toString('hex')

/**
 * The byzantine validator: a bare libp2p peer on the consensus topic that, for every (height,
 * round) it hears of, signs two prevotes and two precommits for different values, and in its own
 * proposer slots proposes two different valid blocks (it follows the chain from the blocks topic
 * and, for blocks it missed, from an honest validator's API).
 */
class Byzantine {
  readonly net: Network
  readonly id: Identity
  readonly genesis: Genesis
  state: LedgerState
  readonly equivocated = new Set<string>()
  readonly proposed = new Set<string>()
  private readonly source: CliPeer

  constructor (net: Network, id: Identity, genesis: Genesis, source: CliPeer) {
    this.net = net
    this.id = id
    this.genesis = genesis
    this.state = genesisState(genesis)
    this.source = source
  }

  static async start (id: Identity, genesis: Genesis, peers: CliPeer[]): Promise<Byzantine> {
    const net = await createNetwork({ privateKey: id.peerKey, listen: ['/ip4/127.0.0.1/tcp/0'], dhtMode: 'client', relayServer: false })
    await net.start()
    const b = new Byzantine(net, id, genesis, peers[0])
    net.services.pubsub.subscribe(b.topic('consensus'))
    net.services.pubsub.subscribe(b.topic('blocks'))
    net.services.pubsub.addEventListener('message', evt => {
      if (evt.detail.type !== 'signed') return
      void b.onMessage(evt.detail.topic, evt.detail.data).catch(() => {})
    })
    for (const p of peers) await net.dial(multiaddr(p.addr))
    return b
  }

  topic (kind: LedgerTopic): string { return ledgerTopic(this.genesis.chain, kind) }

  private async publish (bytes: Uint8Array): Promise<void> {
    await this.net.services.pubsub.publish(this.topic('consensus'), bytes).catch(() => {})
  }

  private async onMessage (topic: string, data: Uint8Array): Promise<void> {
    if (topic === this.topic('blocks')) {
      const { block } = dagCbor.decode(data) as { block: Uint8Array }
      const b = decodeBlock(block)
      // Our round-0 slot at the next height: propose once the others are past their commit pause.
      setTimeout(() => { void this.propose(b.header.height + 1, 0).catch(() => {}) }, 600)
      return
    }
    const decoded = decodeConsensusMessage(data)
    if (decoded.kind === 'evidence') return
    const msg = decoded.kind === 'vote' ? decoded.vote : decoded.proposal
    if (msg.height <= this.state.height) return
    await this.equivocate(msg.height, msg.round, 'value' in msg ? msg.value : null)
    // Our slot in the next round comes early: the others keep it for when they get there.
    await this.propose(msg.height, msg.round + 1)
  }

  /** Two prevotes and two precommits for (height, round): `value` (or a made-up one) and another. */
  private async equivocate (height: number, round: number, value: string | null): Promise<void> {
    const key = `${height}/${round}`
    if (this.equivocated.has(key)) return
    this.equivocated.add(key)
    const one = value ?? hex64()
    for (const [type, other] of [['prevote', hex64()], ['precommit', null]] as const) {
      await this.publish(await signVote(this.id.userKey, { type, height, round, value: one }))
      await this.publish(await signVote(this.id.userKey, { type, height, round, value: other }))
    }
  }

  /** In our slot, two valid but different blocks (empty, one millisecond apart). */
  private async propose (height: number, round: number): Promise<void> {
    const key = `${height}/${round}`
    if (this.proposed.has(key)) return
    await this.follow(height - 1)
    if (this.state.height !== height - 1 || proposer(this.state.validators, height, round) !== this.id.did) return
    this.proposed.add(key)
    const time = Date.now()
    for (const t of [time, time + 1]) {
      const { block } = buildBlock(this.state, [], this.id.did, t)
      await this.publish(await signProposal(this.id.userKey, { height, round, polRound: -1, value: blockHash(block.header) }, block))
    }
  }

  /** Applies committed blocks up to `height`, fetched from an honest validator. */
  private async follow (height: number): Promise<void> {
    while (this.state.height < height) {
      const b = await this.source.api.request<{ header: BlockHeader, txs: string[] }>('GET', `/api/v0/ledger/block/${this.state.height + 1}`).catch(() => undefined)
      if (b == null) return
      this.state = checkBlock(this.state, { header: b.header, txs: b.txs.map(t => new Uint8Array(Buffer.from(t, 'base64'))) }).state
    }
  }

  async stop (): Promise<void> {
    await this.net.stop()
  }
}

describe('ledger faults', { timeout: 150_000 }, () => {
  after(async () => { await set.cleanup() })

  describe('a byzantine validator among four', () => {
    let vals: CliPeer[]
    let byz: Byzantine
    before(async () => {
      const started = await startValidators(3, 1)
      vals = started.vals
      byz = await Byzantine.start(started.ids[3], started.genesis, vals)
    })
    after(async () => {
      await byz?.stop()
      for (const v of vals ?? []) await set.kill(v)
    })

    it('never causes a fork; its double votes are recorded as evidence', async () => {
      const ids = await load(vals, 40, 50)
      for (const id of ids) {
        await waitFor(`tx ${id} committed`, async () => (await vals[0].api.request<{ status: string }>('GET', `/api/v0/ledger/tx/${id}`)).status === 'committed', 60_000, 100)
      }
      // Past at least two of the byzantine validator's proposer slots (one height in four).
      await waitFor('the byzantine validator proposed twice', () => byz.proposed.size >= 2, 40_000)
      const target = Math.max(...(await Promise.all(vals.map(chain))).map(s => s.height)) + 1
      await waitFor('the honest validators go on committing', async () => (await Promise.all(vals.map(chain))).every(s => s.height >= target), 30_000)
      const h = await assertOneChain(vals)
      assert.ok(h >= target)
      // Whoever caught it gossips it: every honest validator ends up holding it.
      const evidence = await waitFor('every honest validator holds evidence naming the byzantine validator', async () => {
        const each = await Promise.all(vals.map(async v => (await v.api.request<{ evidence: Evidence[] }>('GET', '/api/v0/ledger/evidence')).evidence))
        return each.every(list => list.some(e => e.validator === byz.id.did)) ? each.flat() : undefined
      }, 20_000)
      assert.ok(evidence.every(e => e.validator === byz.id.did), 'only the byzantine validator is accused')
    })
  })

  describe('a 2|2 partition of four validators', () => {
    let vals: CliPeer[]
    before(async () => {
      vals = (await startValidators(4)).vals
      await waitFor('all four commit', async () => (await Promise.all(vals.map(chain))).every(s => s.height >= 2), 60_000)
    })

    it('halts commits while split and heals without a fork', async () => {
      const [a, b] = [vals.slice(0, 2), vals.slice(2)]
      const deny = async (side: CliPeer[], others: CliPeer[]): Promise<void> => {
        for (const p of side) await p.api.request('POST', '/api/v0/net/deny', { peers: others.map(o => o.ready.peerId) })
      }
      await deny(a, b)
      await deny(b, a)
      await waitFor('the sides are disconnected', async () => {
        for (const [side, others] of [[a, b], [b, a]]) {
          for (const p of side) {
            const { peers } = await p.api.request<{ peers: Array<{ peerId: string }> }>('GET', '/api/v0/peers')
            if (peers.some(x => others.some(o => o.ready.peerId === x.peerId))) return false
          }
        }
        return true
      }, 20_000)
      // Transactions wait on both sides (each side gossips only its own), so no side idles for want of them.
      const ids = await load(vals, 8)
      // A commit whose precommits were already in hand may still land; then nothing may.
      await new Promise(resolve => setTimeout(resolve, 1_500))
      const halted = (await Promise.all(vals.map(chain))).map(s => s.height)
      // Proving an absence: no state to wait on, so a fixed window of several block intervals
      // (an empty-mempool block takes ~2.5 s, a loaded one well under 1 s).
      await new Promise(resolve => setTimeout(resolve, 8_000))
      assert.deepEqual((await Promise.all(vals.map(chain))).map(s => s.height), halted, 'no side commits without more than 2/3 of the power')

      for (const p of vals) await p.api.request('POST', '/api/v0/net/deny', { peers: [] })
      for (const p of a) for (const o of b) await p.api.request('POST', '/api/v0/connect', { address: o.addr })
      const target = Math.max(...halted) + 3
      await waitFor('all four commit again', async () => (await Promise.all(vals.map(chain))).every(s => s.height >= target), 60_000)
      // What was submitted on either side while split is committed after the heal.
      for (const id of ids) {
        for (const p of [vals[0], vals[3]]) {
          await waitFor(`tx ${id} committed`, async () => (await p.api.request<{ status: string }>('GET', `/api/v0/ledger/tx/${id}`)).status === 'committed', 30_000, 100)
        }
      }
      assert.ok(await assertOneChain(vals) >= target)
    })
  })
})
