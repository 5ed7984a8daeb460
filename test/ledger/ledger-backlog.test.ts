/**
 * Back-pressure: past what the chain can take, a submission is refused with MempoolFullError
 * rather than joining a backlog that grows without bound (mempool.ts, MEMPOOL_BACKLOG_BLOCKS).
 *
 * Unit tests of the mempool past each backlog limit (bytes with real transfers; count with a
 * stub decoder, since no signed transfer is small enough to reach it before the bytes), and that
 * transactions waiting for a missing nonce do not count as work ahead. Then four validators as
 * real processes: with two of them frozen (SIGSTOP: no quorum, so nothing commits) a burst past
 * the limit gets some accepted and the rest refused by name; thawed, every accepted transaction
 * commits and no refused one does; then a second burst to all four while they run, with each
 * height's record (rounds, from GET ledger/status) checked: no stall, bounded rounds.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { initIdentity } from '../../src/identity/keystore.ts'
import { DEVNET_STAKE, FAUCET_GRANT, FAUCET_SUPPLY, faucetDid, genesisJson } from '../../src/ledger/genesis.ts'
import {
  MAX_BACKLOG_BYTES, MAX_BACKLOG_TXS, MAX_TXS_PER_SENDER, MEMPOOL_BACKLOG_BLOCKS, MEMPOOL_MAX_WAIT_MS, PASSED_OVER_MARGIN_MS, UNCHECKED_MAX_WAIT_MS, MAX_BLOCK_TX_BYTES, MAX_TXS_PER_BLOCK, Mempool, ReplacedTxError
} from '../../src/ledger/mempool.ts'
import type { Genesis } from '../../src/ledger/state.ts'
import { signTx, type Tx } from '../../src/ledger/tx.ts'
import { MAX_API_SUBMIT_BATCH_TXS } from '../../src/api/server.ts'
import { PeerSet, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { signProposal } from '../../src/ledger/chain.ts'
import { proposer } from '../../src/ledger/consensus.ts'
import { ledger, ledgerTopic } from '../../src/ledger/index.ts'
import { blockHash, buildBlock, genesisState, STAKE_PER_POWER } from '../../src/ledger/state.ts'
import { Store } from '../../src/store/store.ts'
import { noNetwork, recordingGossip } from '../helpers/ledger-ports.ts'

const CHAIN = 'peerverse-test-backlog'
const keyOf = (label: string, i: number): Ed25519Key => ed25519KeyFromSeed(new Uint8Array(32).fill(0).map((_, j) => j === 0 ? i & 255 : j === 1 ? i >> 8 : j === 2 ? label.charCodeAt(0) : 7))

describe('mempool back-pressure', () => {
  it('the backlog limits are a few full blocks', () => {
    assert.equal(MAX_BACKLOG_TXS, MEMPOOL_BACKLOG_BLOCKS * MAX_TXS_PER_BLOCK)
    assert.equal(MAX_BACKLOG_BYTES, MEMPOOL_BACKLOG_BLOCKS * MAX_BLOCK_TX_BYTES)
  })

  it('refuses a submission past MAX_BACKLOG_BYTES with MempoolFullError; a peer\'s transaction still gets in; a higher fee takes the cheapest one\'s place', async () => {
    const senders = Array.from({ length: Math.ceil(MAX_BACKLOG_BYTES / 250 / MAX_TXS_PER_SENDER) + 2 }, (_, i) => keyOf('b', i))
    const to = didFromPublicKey(senders[0].publicKey)
    const replaced: Array<{ tx: Tx, err: ReplacedTxError }> = []
    const pool = new Mempool(CHAIN, { onReplaced: (tx, err) => { replaced.push({ tx, err }) } })
    const next = (): number => 0
    let accepted = 0
    let refused: Tx | undefined
    let refusedError: Error | undefined
    outer: for (let nonce = 0; nonce < MAX_TXS_PER_SENDER; nonce++) {
      for (const k of senders) {
        const tx = await signTx(k, { chain: CHAIN, nonce, fee: 1n, kind: 'transfer', to, amount: 1n })
        const before = pool.backlog(next)
        try {
          pool.add(tx.bytes, next, undefined, Date.now(), { submitted: true })
          accepted++
        } catch (err) {
          refused = tx
          refusedError = err as Error
          // Refused exactly when it would take the backlog past its bytes.
          assert.ok(before.bytes + tx.bytes.length > MAX_BACKLOG_BYTES)
          break outer
        }
      }
    }
    assert.ok(refused != null, 'the burst went past the limit')
    assert.equal(refusedError?.name, 'MempoolFullError')
    assert.equal(pool.size, accepted)
    assert.ok(pool.backlog(next).bytes <= MAX_BACKLOG_BYTES)
    // Relayed by a peer (accepted by another validator): taken, so it reaches every proposer.
    pool.add(refused.bytes, next)
    assert.equal(pool.size, accepted + 1)
    // A higher fee buys a place: the cheapest waiting one is pushed out, and told so.
    const sender = keyOf('r', 0)
    const rich = await signTx(sender, { chain: CHAIN, nonce: 0, fee: 5n, kind: 'transfer', to, amount: 1n })
    pool.add(rich.bytes, next, undefined, Date.now(), { submitted: true })
    assert.equal(replaced.length, 1)
    assert.equal(replaced[0].err.name, 'ReplacedTxError')
    assert.equal(replaced[0].tx.payload.fee, 1n)
    // The same fee as the cheapest does not.
    const same = await signTx(sender, { chain: CHAIN, nonce: 1, fee: 1n, kind: 'transfer', to, amount: 1n })
    assert.throws(() => pool.add(same.bytes, next, undefined, Date.now(), { submitted: true }), { name: 'MempoolFullError' })
  })

  // No signed transfer is small enough to reach the count before the bytes: a stub decoder makes
  // two-byte "transactions" (sender, nonce) to test the count alone.
  const stub = (bytes: Uint8Array): Tx => ({
    id: `t${bytes[0]}-${bytes[1]}-${bytes[2]}`,
    sender: `s${bytes[0] + 256 * bytes[2]}`,
    bytes,
    payload: { chain: CHAIN, nonce: bytes[1], fee: 1n, kind: 'transfer', to: 'x', amount: 1n } as unknown as Tx['payload']
  })
  const tiny = (sender: number, nonce: number): Uint8Array => new Uint8Array([sender & 255, nonce, sender >> 8])

  it('refuses a submission past MAX_BACKLOG_TXS with MempoolFullError', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const next = (): number => 0
    const t0 = 1_000_000
    let n = 0
    for (let s = 0; n < MAX_BACKLOG_TXS; s++) {
      for (let nonce = 0; nonce < MAX_TXS_PER_SENDER && n < MAX_BACKLOG_TXS; nonce++, n++) pool.add(tiny(s, nonce), next, undefined, t0, { submitted: true })
    }
    assert.equal(pool.backlog(next).txs, MAX_BACKLOG_TXS)
    assert.throws(() => pool.add(tiny(1000, 0), next, undefined, t0, { submitted: true }), { name: 'MempoolFullError' })
    // After a block takes some, there is room again.
    const committed = (s: string): number => s === 's0' ? MAX_TXS_PER_SENDER : 0
    pool.prune(committed, t0 + 1)
    assert.equal(pool.backlog(committed).txs, MAX_BACKLOG_TXS - MAX_TXS_PER_SENDER)
    pool.add(tiny(1000, 0), committed, undefined, t0 + 1, { submitted: true })
  })

  it('refuses a submission while a ready transaction a block passed over has waited past MEMPOOL_MAX_WAIT_MS; a peer\'s still gets in, a higher fee too', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const next = (): number => 0
    const t0 = 1_000_000
    pool.add(tiny(0, 0), next, undefined, t0, { submitted: true })
    // Nothing committed yet: the wait says nothing of the chain's pace.
    pool.add(tiny(1, 0), next, undefined, t0 + 10 * MEMPOOL_MAX_WAIT_MS, { submitted: true })
    // Two blocks commit and pass them over (others' took their places); one block alone is not enough.
    pool.prune(next, t0 + 10 * MEMPOOL_MAX_WAIT_MS + 1)
    assert.equal(pool.oldestWait(next, t0 + 10 * MEMPOOL_MAX_WAIT_MS + 2), 0)
    pool.prune(next, t0 + 10 * MEMPOOL_MAX_WAIT_MS + 1)
    const late = t0 + 10 * MEMPOOL_MAX_WAIT_MS + 2
    assert.ok(pool.oldestWait(next, late) > MEMPOOL_MAX_WAIT_MS)
    assert.throws(() => pool.add(tiny(2, 0), next, undefined, late, { submitted: true }), (err: Error) => err.name === 'MempoolFullError' && /waited \d+ ms, over 600/.test(err.message))
    // Relayed by a peer: another validator accepted it, and every proposer needs it.
    pool.add(tiny(3, 0), next, undefined, late, { submitted: false })
    // A higher fee takes the cheapest one's place.
    const rich = new Uint8Array([4, 0, 0, 9])
    const richStub = (b: Uint8Array): Tx => {
      const tx = stub(b)
      return b.length === 4 ? { ...tx, payload: { ...tx.payload, fee: 5n } as Tx['payload'] } : tx
    }
    const pool2 = new Mempool(CHAIN, { decode: richStub })
    pool2.add(tiny(0, 0), next, undefined, t0, { submitted: true })
    // Committed just after it came: it may not have reached the proposer yet, so it was not passed over.
    pool2.prune(next, t0 + PASSED_OVER_MARGIN_MS)
    pool2.prune(next, t0 + PASSED_OVER_MARGIN_MS)
    assert.equal(pool2.oldestWait(next, t0 + 10 * MEMPOOL_MAX_WAIT_MS), 0)
    pool2.prune(next, t0 + PASSED_OVER_MARGIN_MS + 1)
    pool2.prune(next, t0 + PASSED_OVER_MARGIN_MS + 1)
    // At the limit exactly it is not over; past it, it is.
    pool2.add(tiny(5, 0), next, undefined, t0 + MEMPOOL_MAX_WAIT_MS, { submitted: true })
    assert.throws(() => pool2.add(tiny(2, 0), next, undefined, t0 + MEMPOOL_MAX_WAIT_MS + 1, { submitted: true }), { name: 'MempoolFullError' })
    pool2.add(rich, next, undefined, t0 + MEMPOOL_MAX_WAIT_MS + 1, { submitted: true })
    assert.equal(pool2.size, 2)
    assert.equal(pool2.has('t5-0-0'), false)
    // Once the one that waited is committed, submissions are taken again (the others came after the last commit, or just before it).
    const committed = (s: string): number => s === 's0' ? 1 : 0
    pool.prune(committed, late + 1)
    assert.ok(pool.oldestWait(committed, late + 2) < MEMPOOL_MAX_WAIT_MS)
    pool.add(tiny(2, 0), committed, undefined, late + 2, { submitted: true })
  })

  it('refuses a submission while peers\' transactions have waited unchecked past UNCHECKED_MAX_WAIT_MS', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const none = (): number => 0
    assert.throws(() => pool.add(tiny(0, 0), none, undefined, 1_000_000, { submitted: true, unchecked: 10, uncheckedWaitMs: UNCHECKED_MAX_WAIT_MS + 1 }),
      (err: Error) => err.name === 'MempoolFullError' && /to be checked/.test(err.message))
    pool.add(tiny(0, 0), none, undefined, 1_000_000, { submitted: true, unchecked: 10, uncheckedWaitMs: UNCHECKED_MAX_WAIT_MS })
    // A peer's transaction is taken whatever the inbox.
    pool.add(tiny(1, 0), none, undefined, 1_000_000, { unchecked: 10, uncheckedWaitMs: 10 * UNCHECKED_MAX_WAIT_MS })
  })

  it('only transactions submitted here count as waiting', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const none = (): number => 0
    const t0 = 1_000_000
    pool.add(tiny(0, 0), none, undefined, t0)
    pool.prune(none, t0 + 1)
    assert.equal(pool.oldestWait(none, t0 + 10 * MEMPOOL_MAX_WAIT_MS), 0)
    pool.add(tiny(1, 0), none, undefined, t0 + 10 * MEMPOOL_MAX_WAIT_MS, { submitted: true })
  })

  it('counts peers\' transactions not checked yet as work ahead', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const next = (): number => 0
    assert.throws(() => pool.add(tiny(0, 0), next, undefined, 1_000_000, { submitted: true, unchecked: MAX_BACKLOG_TXS }), { name: 'MempoolFullError' })
    pool.add(tiny(0, 0), next, undefined, 1_000_000, { submitted: true, unchecked: MAX_BACKLOG_TXS - 1 })
  })

  it('a transaction waiting for a missing nonce does not count as waiting for a block', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const next = (): number => 0
    const t0 = 1_000_000
    pool.add(tiny(0, 3), next, undefined, t0, { submitted: true })
    pool.prune(next, t0 + 1)
    assert.equal(pool.oldestWait(next, t0 + 10 * MEMPOOL_MAX_WAIT_MS), 0)
    pool.add(tiny(1, 0), next, undefined, t0 + 10 * MEMPOOL_MAX_WAIT_MS, { submitted: true })
  })

  it('orders equal fees first come, first served, across senders', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const next = (): number => 0
    const order: Array<[number, number]> = [[0, 0], [1, 0], [0, 1], [2, 0], [0, 2], [1, 1]]
    for (const [s, nonce] of order) pool.add(tiny(s, nonce), next, undefined, 1_000_000, { submitted: true })
    const picked = pool.select(next, 100, 1_000_000).map(b => [b[0], b[1]])
    assert.deepEqual(picked, order)
  })

  it('does not count transactions waiting for a missing nonce as work ahead', () => {
    const pool = new Mempool(CHAIN, { decode: stub })
    const next = (): number => 0
    // More gapped transactions than the backlog holds: none is ready, so none shuts others out.
    let n = 0
    for (let s = 0; n <= MAX_BACKLOG_TXS; s++) {
      for (let nonce = 1; nonce < MAX_TXS_PER_SENDER; nonce++, n++) pool.add(tiny(s, nonce), next, undefined, Date.now(), { submitted: true })
    }
    assert.equal(pool.backlog(next).txs, 0)
    pool.add(tiny(2000, 0), next, undefined, Date.now(), { submitted: true })
    assert.equal(pool.backlog(next).txs, 1)
    // The missing nonce arrives: its sender's run becomes work ahead.
    pool.add(tiny(0, 0), next, undefined, Date.now(), { submitted: true })
    assert.equal(pool.backlog(next).txs, 1 + MAX_TXS_PER_SENDER)
  })
})

describe('proposals sent again', () => {
  it('a copy of a proposal taken in already is dropped before its block is decoded again', async () => {
    const vkeys = Array.from({ length: 4 }, (_, i) => keyOf('v', i))
    const vdids = vkeys.map(k => didFromPublicKey(k.publicKey))
    const senders = Array.from({ length: 4 }, (_, i) => keyOf('s', i))
    const genesis: Genesis = { chain: CHAIN, time: 0, accounts: [...vdids.map(id => ({ id, balance: 0n, stake: STAKE_PER_POWER })), ...senders.map(k => ({ id: didFromPublicKey(k.publicKey), balance: 1_000n }))] }
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-ledger-copies-'))
    const store = await Store.open(dir)
    const gossip = recordingGossip()
    const self = vdids.findIndex(id => id !== proposer(genesisState(genesis).validators, 1, 0))
    const service = ledger()({ gossip, protocols: noNetwork(), didOf: () => undefined, identity: { did: vdids[self], key: vkeys[self] }, store: store.sublevel('ledger'), genesis })
    try {
      await service.start()
      const state = genesisState(genesis)
      const who = proposer(state.validators, 1, 0)
      const txs = await Promise.all(senders.map(async k => (await signTx(k, { chain: CHAIN, nonce: 0, fee: 1n, kind: 'transfer', to: vdids[0], amount: 1n })).bytes))
      const { block } = buildBlock(state, txs, who, 1)
      const message = await signProposal(vkeys[vdids.indexOf(who)], { height: 1, round: 0, polRound: -1, value: blockHash(block.header) }, block)
      const topic = ledgerTopic(CHAIN, 'consensus')
      gossip.deliver(topic, message)
      await waitFor('the proposal checked', () => service.executedBlocks === 1, 30_000, 5)
      for (let i = 0; i < 3; i++) gossip.deliver(topic, message)
      await waitFor('the copies dropped', () => service.consensusReceived.copies === 3, 30_000, 5)
      assert.equal(service.executedBlocks, 1)
      // Other bytes (another proposal) are not a copy.
      const other = buildBlock(state, txs.slice(1), who, 2).block
      gossip.deliver(topic, await signProposal(vkeys[vdids.indexOf(who)], { height: 1, round: 0, polRound: -1, value: blockHash(other.header) }, other))
      await waitFor('the other proposal checked', () => service.executedBlocks === 2, 30_000, 5)
      assert.equal(service.consensusReceived.copies, 3)
    } finally {
      await service.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

interface Status { chain: string, height: number, heights: Array<{ height: number, rounds: number, timeouts: Record<string, number> }> }
interface Balance { nonce: number }

describe('four validators past their limit', { timeout: 600_000 }, () => {
  const set = new PeerSet()
  const vals: CliPeer[] = []
  const SENDERS = 80
  const PER_SENDER = 60
  const senders = Array.from({ length: 2 * SENDERS }, (_, i) => keyOf('p', i))
  const sdids = senders.map(k => didFromPublicKey(k.publicKey))
  let chain = ''

  const status = async (p: CliPeer): Promise<Status> => await p.api.request<Status>('GET', '/api/v0/ledger/status')
  const nonceOf = async (p: CliPeer, did: string): Promise<number> => (await p.api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent(did)}`)).nonce

  /** Signs PER_SENDER transfers for each of `keys`, sender after sender (so what is refused is each sender's tail). */
  const burst = async (keys: Ed25519Key[]): Promise<Tx[][]> => await Promise.all(keys.map(async k => {
    const txs: Tx[] = []
    for (let nonce = 0; nonce < PER_SENDER; nonce++) txs.push(await signTx(k, { chain, nonce, fee: 1n, kind: 'transfer', to: sdids[0], amount: 1n }))
    return txs
  }))

  /** Submits each sender's transactions in order to `p`, in batches; the error name of each refused one, by id. */
  const submit = async (p: CliPeer, txs: Tx[]): Promise<Map<string, string | null>> => {
    const out = new Map<string, string | null>()
    for (let i = 0; i < txs.length; i += MAX_API_SUBMIT_BATCH_TXS) {
      const group = txs.slice(i, i + MAX_API_SUBMIT_BATCH_TXS)
      const res = await p.api.request<{ results: Array<{ error?: string }> }>('POST', '/api/v0/ledger/submit-batch', { txs: group.map(t => Buffer.from(t.bytes).toString('base64')) })
      group.forEach((t, j) => { out.set(t.id, res.results[j].error ?? null) })
    }
    return out
  }

  /** Every accepted transaction commits and no refused one does: each sender's nonce ends at its accepted count. */
  const allCommitted = async (keys: number[], accepted: Map<number, number>): Promise<void> => {
    await waitFor('every accepted transaction committed', async () => {
      for (const i of keys) if (await nonceOf(vals[0], sdids[i]) < (accepted.get(i) ?? 0)) return false
      return true
    }, 240_000, 500)
    for (const i of keys) assert.equal(await nonceOf(vals[0], sdids[i]), accepted.get(i) ?? 0, `sender ${i}`)
  }

  before(async () => {
    const dir = await set.tempDir()
    const dids: string[] = []
    for (let i = 0; i < 4; i++) dids.push((await initIdentity(join(dir, `v${i}`))).did)
    chain = 'peerverse-test-backlog-chain'
    const genesis: Genesis = {
      chain,
      time: Date.now(),
      accounts: [
        { id: faucetDid(chain), balance: FAUCET_SUPPLY },
        ...dids.map(id => ({ id, balance: FAUCET_GRANT, stake: DEVNET_STAKE })),
        ...sdids.map(id => ({ id, balance: 1_000_000n, stake: 0n }))
      ]
    }
    const genesisPath = join(dir, 'genesis.json')
    await writeFile(genesisPath, genesisJson(genesis))
    vals.push(await set.start({ dataDir: join(dir, 'v0'), extra: ['--genesis', genesisPath] }))
    vals.push(...await Promise.all([1, 2, 3].map(async i => await set.start({ dataDir: join(dir, `v${i}`), bootstrap: [vals[0].addr], extra: ['--genesis', genesisPath] }))))
    await waitFor('all four commit blocks', async () => (await Promise.all(vals.map(status))).every(s => s.height >= 3), 300_000)
  })

  after(async () => {
    for (const v of vals) v.proc.kill('SIGCONT')
    await set.cleanup()
  })

  it('refuse what is past the backlog by name, commit all they accepted, and keep committing with bounded rounds', async () => {
    // 1. Two of four frozen: no quorum, so nothing commits while the burst comes in.
    const keys1 = Array.from({ length: SENDERS }, (_, i) => i)
    const txs1 = await burst(keys1.map(i => senders[i]))
    vals[2].proc.kill('SIGSTOP')
    vals[3].proc.kill('SIGSTOP')
    // A height whose precommits were already on their way may still commit: start once the two left agree.
    await waitFor('the two left at one height', async () => { const [a, b] = await Promise.all([status(vals[0]), status(vals[1])]); return a.height === b.height }, 60_000)
    const results1 = await submit(vals[0], txs1.flat())
    const accepted1 = new Map<number, number>()
    const refusedNames = new Set<string>()
    txs1.forEach((txs, i) => {
      let n = 0
      for (const t of txs) {
        const e = results1.get(t.id)
        if (e == null) { assert.equal(n, txs.indexOf(t), 'a sender\'s accepted transactions are a prefix'); n++ } else refusedNames.add(e)
      }
      accepted1.set(i, n)
    })
    const total1 = [...accepted1.values()].reduce((a, b) => a + b, 0)
    assert.ok(total1 > 0 && total1 < SENDERS * PER_SENDER, `some accepted, some refused (accepted ${total1})`)
    assert.deepEqual([...refusedNames], ['MempoolFullError'])
    const refusedId = [...results1].find(([, e]) => e != null)![0]
    assert.equal((await vals[0].api.request<{ status: string, error?: string }>('GET', `/api/v0/ledger/tx/${refusedId}`)).error, 'MempoolFullError')
    vals[2].proc.kill('SIGCONT')
    vals[3].proc.kill('SIGCONT')
    await allCommitted(keys1, accepted1)
    const resumed = (await status(vals[0])).height

    // 2. A burst to all four while they run: whatever is accepted commits; the chain does not stall.
    const keys2 = Array.from({ length: SENDERS }, (_, i) => SENDERS + i)
    const txs2 = await burst(keys2.map(i => senders[i]))
    const to = (i: number): CliPeer => vals[i % 4]
    const parts = await Promise.all(vals.map(async (v, j) => await submit(v, txs2.filter((_, i) => i % 4 === j).flat())))
    const results2 = new Map([...parts.flatMap(m => [...m])])
    const names = new Set([...results2.values()].filter(e => e != null))
    assert.ok([...names].every(e => e === 'MempoolFullError'), `refused by name: ${[...names].join(', ')}`)
    // As a client would: what was refused is offered again, in nonce order, after the next block.
    let refused = txs2.map((txs, i) => ({ i, txs: txs.filter(t => results2.get(t.id) != null) })).filter(r => r.txs.length > 0)
    while (refused.length > 0) {
      const h = (await status(vals[0])).height
      await waitFor('the next block', async () => (await status(vals[0])).height > h, 120_000).catch(async (err: Error) => {
        // Say what each validator recorded of its last heights: rounds, timeouts, queue waits.
        const records = await Promise.all(vals.map(async v => (await status(v)).heights.slice(-3)))
        throw new Error(`${err.message}; last heights: ${JSON.stringify(records)}`)
      })
      for (const r of refused) {
        while (r.txs.length > 0) {
          const again = await submit(to(r.i), [r.txs[0]])
          const e = again.get(r.txs[0].id)
          if (e != null && e !== 'DuplicateTxError') { assert.equal(e, 'MempoolFullError'); break }
          r.txs.shift()
        }
      }
      refused = refused.filter(r => r.txs.length > 0)
    }
    const accepted2 = new Map(keys2.map(i => [i, PER_SENDER]))
    await allCommitted(keys2, accepted2)
    // Every height since the thaw, as each validator recorded it: decided in a bounded number of rounds.
    const end = (await status(vals[0])).height
    for (const v of vals) {
      const { heights } = await status(v)
      const after = heights.filter(h => h.height > resumed + 1 && h.height <= end)
      assert.ok(after.length > 0, 'heights were recorded')
      const worst = Math.max(...after.map(h => h.rounds))
      assert.ok(worst <= 2, `rounds per height at most 2 under load (worst ${worst}: ${JSON.stringify(after.filter(h => h.rounds === worst))})`)
    }
  })
})
