/**
 * What `tx ID` says of a transaction, on a LedgerService over real LevelDB on a stub network (a
 * follower, so nothing commits unless a test delivers a committed block): a transaction answered
 * "pending" is on disk before that answer, and after a restart is pending again and submitted
 * again; the loser of a double spend is refused with its reason, kept across a restart, and the
 * reasons kept are bounded (MAX_REJECTED_KEPT, in memory and on disk); a nonce that skips ahead
 * waits for the missing one, boundedly, and one too far ahead is refused with NonceGapError (a
 * peer's such transaction dropped and counted); a forged sender is refused with
 * InvalidSignatureError whatever nonce it names.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { Store } from '../../src/store/store.ts'
import { signVote } from '../../src/ledger/chain.ts'
import { ledger, ledgerTopic, type LedgerService } from '../../src/ledger/index.ts'
import { MAX_REJECTED_KEPT, TxBook } from '../../src/ledger/pending.ts'
import { GAP_LIFETIME_MS, MAX_NONCE_AHEAD, Mempool } from '../../src/ledger/mempool.ts'
import { encodeSyncFrame } from '../../src/ledger/sync.ts'
import { blockHash, buildBlock, STAKE_PER_POWER, type Genesis } from '../../src/ledger/state.ts'
import { encodeTxBatch } from '../../src/ledger/wire.ts'
import { signTx, type Tx } from '../../src/ledger/tx.ts'
import { noNetwork, recordingGossip, type RecordingGossip } from '../helpers/ledger-ports.ts'

const CHAIN = 'peerverse-fate'
const keys: Ed25519Key[] = Array.from({ length: 4 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(i + 31)))
const dids = keys.map(k => didFromPublicKey(k.publicKey))
const validator = ed25519KeyFromSeed(new Uint8Array(32).fill(90))
const follower = ed25519KeyFromSeed(new Uint8Array(32).fill(91))
const genesis: Genesis = {
  chain: CHAIN,
  time: 0,
  accounts: [{ id: didFromPublicKey(validator.publicKey), balance: 0n, stake: STAKE_PER_POWER }, ...dids.map(id => ({ id, balance: 1_000_000n }))]
}

async function transfer (from: number, nonce: number, amount = 1n): Promise<Tx> {
  return await signTx(keys[from], { chain: CHAIN, nonce, fee: 1n, kind: 'transfer', to: dids[(from + 1) % dids.length], amount })
}

/** The same transaction with a byte of its signature (bytes 10..73) changed: a forged sender. */
function forged (t: Tx): Uint8Array {
  const b = Uint8Array.from(t.bytes)
  b[12] ^= 1
  return b
}

const dirs: string[] = []
const open: Array<{ service: LedgerService, store: Store }> = []

after(async () => {
  for (const o of open) { await o.service.stop(); await o.store.close() }
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** A follower on the store in `dir`; `gossip` lets the test deliver blocks and transactions. */
async function follow (dir: string): Promise<{ service: LedgerService, store: Store, gossip: RecordingGossip, close: () => Promise<void> }> {
  const store = await Store.open(dir)
  const gossip = recordingGossip()
  const service = ledger()({
    gossip,
    protocols: noNetwork(),
    didOf: () => undefined,
    identity: { did: didFromPublicKey(follower.publicKey), key: follower },
    store: store.sublevel('ledger'),
    genesis
  })
  await service.start()
  const entry = { service, store }
  open.push(entry)
  return {
    service,
    store,
    gossip,
    close: async () => {
      open.splice(open.indexOf(entry), 1)
      await service.stop()
      await store.close()
    }
  }
}

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-ledger-fate-'))
  dirs.push(dir)
  return dir
}

/** The next block, holding `txs`, committed by the validator, as the blocks topic carries it. */
async function committedBlock (service: LedgerService, txs: Tx[]): Promise<Uint8Array> {
  const { block } = buildBlock(service.state, txs.map(t => t.bytes), didFromPublicKey(validator.publicKey), service.state.height + 1)
  const vote = await signVote(validator, { type: 'precommit', height: block.header.height, round: 0, value: blockHash(block.header) })
  return encodeSyncFrame({ block, commit: [vote] })
}

async function until (what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 20_000
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('the fate of a transaction', () => {
  it('answered "pending", it is on disk: after a restart it is pending again and sent again; the loser of a double spend is refused with its reason, across restarts too', async () => {
    const dir = await tempDir()
    let f = await follow(dir)
    const loser = await transfer(0, 0, 5n)
    const winner = await transfer(0, 0, 6n)
    const later = await transfer(0, 1)
    await f.service.submit(loser.bytes)
    await f.service.submit(later.bytes)
    assert.equal((await f.service.txStatus(loser.id)).status, 'pending')
    assert.equal(f.service.status().pendingOwn, 2)
    // A restart (a crash loses nothing more: "pending" was answered once the write was synced).
    await f.close()
    f = await follow(dir)
    assert.deepEqual(await f.service.txStatus(loser.id), { status: 'pending' })
    assert.ok(f.service.mempool.has(loser.id) && f.service.mempool.has(later.id), 'both back in the mempool')
    const sent = (): number => f.gossip.published.filter(p => p.topic === ledgerTopic(CHAIN, 'txs')).length
    await until('sent again', () => sent() > 0)
    // The other spend of nonce 0 commits: ours is refused, with why; the next nonce is still good.
    f.gossip.deliver(ledgerTopic(CHAIN, 'blocks'), await committedBlock(f.service, [winner]))
    await until('the block commits', () => f.service.state.height === 1)
    const lost = await f.service.txStatus(loser.id)
    assert.equal(lost.status, 'rejected')
    assert.equal((lost as { error: string }).error, 'StaleNonceError')
    assert.match((lost as { message: string }).message, /used by another transaction, committed at height 1/)
    assert.equal((await f.service.txStatus(winner.id)).status, 'committed')
    assert.equal((await f.service.txStatus(later.id)).status, 'pending')
    // Kept across a restart; the one still pending comes back and then commits.
    await f.close()
    f = await follow(dir)
    assert.equal((await f.service.txStatus(loser.id)).status, 'rejected')
    assert.equal((await f.service.txStatus(later.id)).status, 'pending')
    f.gossip.deliver(ledgerTopic(CHAIN, 'blocks'), await committedBlock(f.service, [later]))
    await until('the next block commits', () => f.service.state.height === 2)
    assert.equal((await f.service.txStatus(later.id)).status, 'committed')
    assert.equal(f.service.status().pendingOwn, 0)
    await f.close()
    f = await follow(dir)
    assert.equal(f.service.status().pendingOwn, 0)
    assert.equal(f.service.mempool.size, 0)
    assert.equal((await f.service.txStatus(loser.id)).status, 'rejected')
  })

  it('a pending transaction pushed out by a higher fee for its nonce is refused as replaced', async () => {
    const f = await follow(await tempDir())
    const cheap = await transfer(1, 0, 1n)
    const dear = await signTx(keys[1], { chain: CHAIN, nonce: 0, fee: 5n, kind: 'transfer', to: dids[2], amount: 1n })
    await f.service.submit(cheap.bytes)
    await f.service.submit(dear.bytes)
    const s = await f.service.txStatus(cheap.id)
    assert.equal((s as { error: string }).error, 'ReplacedTxError')
    assert.equal((await f.service.txStatus(dear.id)).status, 'pending')
  })

  it('keeps a nonce that skips ahead waiting for the missing one (at most MAX_NONCE_AHEAD past the next, GAP_LIFETIME_MS long), refuses one further with NonceGapError, and drops and counts a peer\'s such', async () => {
    const f = await follow(await tempDir())
    const skip = await transfer(2, 1)
    await f.service.submit(skip.bytes)
    assert.equal((await f.service.txStatus(skip.id)).status, 'pending')
    const far = await transfer(2, MAX_NONCE_AHEAD)
    await assert.rejects(f.service.submit(far.bytes), { name: 'NonceGapError', message: /skips too far ahead: next is 0/ })
    assert.equal((await f.service.txStatus(far.id) as { error: string }).error, 'NonceGapError')
    f.gossip.deliver(ledgerTopic(CHAIN, 'txs'), encodeTxBatch([(await transfer(2, MAX_NONCE_AHEAD + 3)).bytes]))
    await until('the inbox is checked', () => f.service.inboxSize === 0)
    assert.equal(f.service.status().gossipRefused.NonceGapError, 1)
    assert.equal(f.service.mempool.size, 1)
    // The missing nonce comes (through another peer, say): both commit.
    const missing = await transfer(2, 0)
    f.gossip.deliver(ledgerTopic(CHAIN, 'blocks'), await committedBlock(f.service, [missing, skip]))
    await until('the block commits', () => f.service.state.height === 1)
    assert.equal((await f.service.txStatus(skip.id)).status, 'committed')
  })

  it('drops a transaction that waited GAP_LIFETIME_MS for a missing nonce', async () => {
    const pool = new Mempool(CHAIN)
    const next = (): number => 0
    const t0 = 1_000_000
    const waiting = await transfer(2, 2)
    const ready = await transfer(1, 0)
    pool.add(waiting.bytes, next, undefined, t0)
    pool.add(ready.bytes, next, undefined, t0)
    assert.deepEqual(pool.expireGaps(next, t0 + GAP_LIFETIME_MS), [])
    assert.deepEqual(pool.expireGaps(next, t0 + GAP_LIFETIME_MS + 1).map(e => [e.tx.id, e.missing]), [[waiting.id, 0]])
    assert.equal(pool.size, 1)
    assert.ok(pool.has(ready.id), 'one whose nonce is next never expires so')
  })

  it('refuses a forged sender as InvalidSignatureError whatever its nonce: used, skipping ahead or next', async () => {
    const f = await follow(await tempDir())
    const first = await transfer(3, 0)
    f.gossip.deliver(ledgerTopic(CHAIN, 'blocks'), await committedBlock(f.service, [first]))
    await until('the block commits', () => f.service.state.height === 1)
    for (const t of [await transfer(3, 0, 9n), await transfer(3, 1), await transfer(3, 7)]) {
      await assert.rejects(f.service.submit(forged(t)), { name: 'InvalidSignatureError' })
    }
    // Well signed, the used nonce is stale: the check that failed was the signature's.
    await assert.rejects(f.service.submit((await transfer(3, 0, 9n)).bytes), { name: 'StaleNonceError' })
  })

  it('keeps the last MAX_REJECTED_KEPT reasons on disk and forgets the oldest past it', async () => {
    const dir = await tempDir()
    let store = await Store.open(dir)
    let book = new TxBook(store.sublevel('ledger'))
    await book.load()
    const n = MAX_REJECTED_KEPT + 2
    const ids = Array.from({ length: n }, (_, i) => `tx${String(i).padStart(6, '0')}`)
    await book.accept(ids.map(id => ({ id, bytes: Uint8Array.of(1) })))
    assert.equal(book.pendingCount, n)
    for (const id of ids) book.reject(id, { name: 'StaleNonceError', message: id })
    assert.equal(book.rejectedCount, MAX_REJECTED_KEPT)
    assert.equal(book.rejection(ids[0]), undefined)
    // The refusals were written in the background: one more acceptance waits behind them.
    await book.accept([{ id: 'last', bytes: Uint8Array.of(2) }])
    await store.close()
    store = await Store.open(dir)
    const db = store.sublevel('ledger')
    book = new TxBook(db)
    assert.deepEqual((await book.load()).length, 1)
    assert.equal(book.rejectedCount, MAX_REJECTED_KEPT)
    assert.equal(book.rejection(ids[1]), undefined)
    assert.deepEqual(book.rejection(ids[2]), { error: 'StaleNonceError', message: ids[2] })
    assert.deepEqual(book.rejection(ids[n - 1]), { error: 'StaleNonceError', message: ids[n - 1] })
    let onDisk = 0
    for await (const _ of db.keys({ gte: 'x/', lt: 'x0' })) onDisk++
    assert.equal(onDisk, MAX_REJECTED_KEPT)
    await store.close()
  })
})
