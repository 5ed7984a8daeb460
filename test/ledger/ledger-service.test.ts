/**
 * The ledger's work-once machinery and its limits, without a network: a VerifiedTxCache checks
 * each transaction's signature once and never serves other bytes; gossiped transaction batches,
 * proposal messages and blocks are bounded by named constants, each tested past; the mempool's
 * admission and post-commit recheck keep out what no block could hold; and a LedgerService on a
 * stub network (a one-validator chain committing on its own) verifies every transaction exactly
 * once from submission to commit, gossips them in batches, charges failed ones their fee, and
 * bounds what it remembers. Gossiped transactions wait in a bounded inbox and are checked into the
 * mempool on later turns of the event loop.
 */
import { describe, it, after } from 'node:test'
import { once } from 'node:events'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { signRecord } from '../../src/identity/record.ts'
import { GOSSIP_MAX_MESSAGE_BYTES } from '../../src/net/limits.ts'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { Store } from '../../src/store/store.ts'
import {
  ChainStore, decodeConsensusMessage, decodeProposal, encodeBlock, encodeEvidenceMessage, encodeProposalMessage, MAX_BLOCK_BYTES, MAX_PROPOSAL_MESSAGE_BYTES,
  MAX_PROPOSAL_RECORD_BYTES, MAX_VOTE_BYTES, PROPOSAL_TYPE, signProposal, signVote
} from '../../src/ledger/chain.ts'
import { proposer } from '../../src/ledger/consensus.ts'
import { MAX_NONCE_AHEAD, MAX_TXS_PER_SENDER, Mempool } from '../../src/ledger/mempool.ts'
import { consensusProtocol, ledger, LedgerService, ledgerTopic, mempoolProtocol } from '../../src/ledger/index.ts'
import { MAX_EXECUTED_BLOCKS } from '../../src/ledger/executions.ts'
import { MAX_BLOCK_TX_BYTES, MAX_REJECTED_KEPT, MAX_TXS_PER_BLOCK } from '../../src/ledger/service.ts'
import { MAX_MEMPOOL_STREAM_QUEUE, MAX_TX_INBOX } from '../../src/ledger/tx-channel.ts'
import {
  decodeTxBatch, encodeTxBatch, evidenceHeightKept, MAX_EVIDENCE_AGE_HEIGHTS, MAX_TX_BATCH_BYTES, MAX_TX_BATCH_MESSAGE_BYTES, MAX_TX_BATCH_TXS
} from '../../src/ledger/wire.ts'
import { libp2pProtocols } from '../../src/net/libp2p-ports.ts'
import { noNetwork, recordingGossip, type RecordingGossip } from '../helpers/ledger-ports.ts'
import { blockHash, buildBlock, genesisState, MAX_VALIDATORS, STAKE_PER_POWER, type Genesis } from '../../src/ledger/state.ts'
import { decodeTx, MAX_TX_BYTES, MAX_VERIFIED_TXS, signTx, VerifiedTxCache, type Tx } from '../../src/ledger/tx.ts'

const CHAIN = 'peerverse-test'
const keys: Ed25519Key[] = Array.from({ length: 8 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(i + 11)))
const dids = keys.map(k => didFromPublicKey(k.publicKey))

async function transfer (from: number, nonce: number, to = (from + 1) % dids.length, amount = 1n, fee = 1n): Promise<Tx> {
  return await signTx(keys[from], { chain: CHAIN, nonce, fee, kind: 'transfer', to: dids[to], amount })
}

describe('VerifiedTxCache', () => {
  it('verifies each distinct transaction once, and serves it again only for the same bytes', async () => {
    const cache = new VerifiedTxCache()
    assert.equal(cache.max, MAX_VERIFIED_TXS)
    const t = await transfer(0, 0)
    const first = cache.decode(t.bytes, CHAIN)
    const again = cache.decode(Uint8Array.from(t.bytes), CHAIN)
    assert.deepEqual([cache.misses, cache.hits], [1, 1])
    assert.equal(again, first)
    assert.deepEqual(first, decodeTx(t.bytes, CHAIN))
    // A hit still checks the chain.
    assert.throws(() => cache.decode(t.bytes, 'another-chain'), { name: 'WrongChainError' })
    // Other bytes are verified, and failures are not remembered (a byte of the signature, which
    // starts at byte 10: every other check passes, the signature check refuses it).
    const mutated = Uint8Array.from(t.bytes)
    mutated[12] ^= 1
    assert.throws(() => cache.decode(mutated, CHAIN), { name: 'InvalidSignatureError' })
    assert.throws(() => cache.decode(mutated, CHAIN), { name: 'InvalidSignatureError' })
    assert.equal(cache.misses, 3)
    assert.equal(cache.size, 1)
  })

  it('holds MAX_VERIFIED_TXS by default and forgets the oldest past it', async () => {
    const cache = new VerifiedTxCache()
    const first = await transfer(0, 0)
    cache.decode(first.bytes)
    let last = first
    for (let n = 1; n <= MAX_VERIFIED_TXS; n++) {
      last = await transfer(0, n)
      cache.decode(last.bytes)
    }
    assert.equal(cache.size, MAX_VERIFIED_TXS)
    const misses = cache.misses
    cache.decode(last.bytes)
    assert.equal(cache.misses, misses)
    cache.decode(first.bytes)
    assert.equal(cache.misses, misses + 1)
  })

  it('forgets the least recently used beyond its bound', async () => {
    const cache = new VerifiedTxCache(3)
    const txs = await Promise.all([0, 1, 2, 3].map(async n => await transfer(0, n)))
    for (const t of txs.slice(0, 3)) cache.decode(t.bytes)
    cache.decode(txs[0].bytes) // used again: now the most recent
    cache.decode(txs[3].bytes) // one past the bound: txs[1] goes
    assert.equal(cache.size, 3)
    const misses = cache.misses
    cache.decode(txs[0].bytes)
    cache.decode(txs[2].bytes)
    assert.equal(cache.misses, misses)
    cache.decode(txs[1].bytes)
    assert.equal(cache.misses, misses + 1)
    assert.throws(() => new VerifiedTxCache(0), RangeError)
  })
})

describe('gossiped transaction batches', () => {
  it('round-trip up to MAX_TX_BATCH_TXS transactions and refuse one more', async () => {
    // Batches are only framing: the transactions in them are checked one by one on receipt.
    const t = new Uint8Array(32)
    const full = Array.from({ length: MAX_TX_BATCH_TXS }, () => t)
    assert.equal(decodeTxBatch(encodeTxBatch(full)).length, MAX_TX_BATCH_TXS)
    assert.throws(() => encodeTxBatch([...full, t]), { name: 'InvalidTxBatchError' })
    assert.throws(() => decodeTxBatch(dagCbor.encode([...full, t])), { name: 'InvalidTxBatchError' })
  })

  it('refuse more than MAX_TX_BATCH_BYTES of transactions, a transaction over MAX_TX_BYTES, and what is not a list of bytes', () => {
    const big = new Uint8Array(MAX_TX_BYTES)
    const n = Math.floor(MAX_TX_BATCH_BYTES / MAX_TX_BYTES)
    assert.equal(decodeTxBatch(dagCbor.encode(Array.from({ length: n }, () => big))).length, n)
    assert.throws(() => decodeTxBatch(dagCbor.encode(Array.from({ length: n + 1 }, () => big))), { name: 'InvalidTxBatchError' })
    assert.throws(() => decodeTxBatch(dagCbor.encode([new Uint8Array(MAX_TX_BYTES + 1)])), { name: 'InvalidTxBatchError' })
    for (const bad of [dagCbor.encode({ txs: [] }), dagCbor.encode(['text']), new Uint8Array([0xff, 1, 2])]) {
      assert.throws(() => decodeTxBatch(bad), { name: 'InvalidTxBatchError' })
    }
  })
})

describe('proposal messages and block sizes', () => {
  const validator = ed25519KeyFromSeed(new Uint8Array(32).fill(99))
  const genesis: Genesis = { chain: CHAIN, time: 0, accounts: [{ id: didFromPublicKey(validator.publicKey), balance: 0n, stake: STAKE_PER_POWER }, ...dids.map(id => ({ id, balance: 1_000_000n }))] }

  it('a full block fits a proposal message and, with the largest commit, a gossip message', () => {
    // Each transaction adds at most 3 bytes of framing; the header is well under 1 KiB.
    assert.ok(MAX_BLOCK_TX_BYTES + 3 * MAX_TXS_PER_BLOCK + 1024 <= MAX_BLOCK_BYTES)
    assert.ok(MAX_PROPOSAL_MESSAGE_BYTES <= GOSSIP_MAX_MESSAGE_BYTES)
    assert.ok(MAX_BLOCK_BYTES + MAX_VALIDATORS * (MAX_VOTE_BYTES + 3) + 64 <= GOSSIP_MAX_MESSAGE_BYTES)
  })

  it('the mempool fills a block up to MAX_BLOCK_TX_BYTES, which then fits MAX_BLOCK_BYTES', async () => {
    const senders = Array.from({ length: 40 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(150 + i)))
    const sdids = senders.map(k => didFromPublicKey(k.publicKey))
    const state = genesisState({ ...genesis, accounts: [...genesis.accounts, ...sdids.map(id => ({ id, balance: 1_000_000n }))] })
    const pool = new Mempool(CHAIN)
    const nonces = new Map<string, number>()
    let bytes = 0
    for (let i = 0; bytes <= MAX_BLOCK_TX_BYTES; i++) {
      const from = i % senders.length
      const t = await signTx(senders[from], { chain: CHAIN, nonce: Math.floor(i / senders.length), fee: 1n, kind: 'transfer', to: dids[0], amount: 1n })
      pool.add(t.bytes, s => nonces.get(s) ?? 0)
      bytes += t.bytes.length
    }
    const picked = pool.select(s => nonces.get(s) ?? 0, MAX_TXS_PER_BLOCK, MAX_BLOCK_TX_BYTES)
    assert.ok(picked.length < pool.size)
    assert.ok(picked.reduce((n, b) => n + b.length, 0) <= MAX_BLOCK_TX_BYTES)
    const { block, skipped } = buildBlock(state, picked, genesis.accounts[0].id, 1)
    assert.deepEqual(skipped, [])
    assert.ok(encodeBlock(block).length <= MAX_BLOCK_BYTES)
    const message = await signProposal(validator, { height: 1, round: 0, polRound: -1, value: blockHash(block.header) }, block)
    assert.ok(message.length <= MAX_PROPOSAL_MESSAGE_BYTES)
    assert.equal(decodeProposal(message).blockValue.txs.length, picked.length)
  })

  it('refuses a block that is not the one the proposal names, and a message or record over its bound', async () => {
    const state = genesisState(genesis)
    const txs = await Promise.all([0, 1, 2].map(async i => (await transfer(i, 0)).bytes))
    const { block } = buildBlock(state, txs, genesis.accounts[0].id, 1)
    const value = blockHash(block.header)
    const message = await signProposal(validator, { height: 1, round: 0, polRound: -1, value }, block)
    const ok = decodeConsensusMessage(message)
    assert.equal(ok.kind, 'proposal')
    const { proposal } = dagCbor.decode(message) as { proposal: Uint8Array }
    // A relay swaps, drops or adds a transaction: the header's txRoot no longer matches.
    const other = (await transfer(5, 0)).bytes
    for (const changed of [[txs[1], txs[0], txs[2]], txs.slice(1), [...txs, other], [txs[0], txs[1], other]]) {
      assert.throws(() => decodeProposal(encodeProposalMessage(proposal, encodeBlock({ header: block.header, txs: changed }))), { name: 'InvalidProposalError', message: /txRoot/ })
    }
    // Another header: not the block the signature names.
    assert.throws(() => decodeProposal(encodeProposalMessage(proposal, encodeBlock({ header: { ...block.header, time: 2 }, txs: block.txs }))), { name: 'InvalidProposalError' })
    await assert.rejects(signProposal(validator, { height: 1, round: 0, polRound: -1, value: 'ab'.repeat(32) }, block), { name: 'InvalidProposalError' })
    // Past the bounds.
    assert.throws(() => decodeConsensusMessage(new Uint8Array(MAX_PROPOSAL_MESSAGE_BYTES + 1)), { name: 'InvalidProposalError' })
    const fat = (await signRecord(validator, PROPOSAL_TYPE, { height: 1, round: 0, polRound: -1, value, pad: 'x'.repeat(MAX_PROPOSAL_RECORD_BYTES) })).bytes
    assert.throws(() => decodeProposal(encodeProposalMessage(fat, encodeBlock(block))), { name: 'RecordTooLargeError' })
    const extra = (await signRecord(validator, PROPOSAL_TYPE, { height: 1, round: 0, polRound: -1, value, block: encodeBlock(block) })).bytes
    assert.throws(() => decodeProposal(encodeProposalMessage(extra, encodeBlock(block))), { name: /RecordTooLargeError|InvalidBlockError/ })
  })
})

describe('mempool admission and recheck', () => {
  it('refuses a transaction whose sender cannot pay its fee, and drops those a commit made unpayable', async () => {
    const balances = new Map<string, bigint>([[dids[0], 10n], [dids[1], 1n]])
    const nonce = (): number => 0
    const balanceOf = (s: string): bigint => balances.get(s) ?? 0n
    const pool = new Mempool(CHAIN)
    const noAccount = (await transfer(2, 0)).bytes
    const feeTooHigh = (await transfer(0, 0, 1, 1n, 11n)).bytes
    assert.throws(() => pool.add(noAccount, nonce, balanceOf), { name: 'InsufficientFundsError' })
    assert.throws(() => pool.add(feeTooHigh, nonce, balanceOf), { name: 'InsufficientFundsError' })
    pool.add((await transfer(0, 0)).bytes, nonce, balanceOf)
    pool.add((await transfer(0, 1)).bytes, nonce, balanceOf)
    pool.add((await transfer(1, 0)).bytes, nonce, balanceOf)
    assert.deepEqual(pool.recheck(nonce, balanceOf), [])
    balances.set(dids[0], 0n)
    assert.deepEqual(pool.recheck(nonce, balanceOf).map(t => [t.sender, t.payload.nonce]), [[dids[0], 0], [dids[0], 1]])
    assert.equal(pool.size, 1)
  })

  it('refuses a flood past a sender\'s limit and duplicates before any signature check, and a forgery as forged whatever its nonce or fee', async () => {
    const cache = new VerifiedTxCache()
    const pool = new Mempool(CHAIN, { decode: cache.decode })
    const next = (s: string): number => s === dids[1] ? 5 : 0
    const balanceOf = (s: string): bigint => s === dids[2] ? 0n : 1_000n
    /** The same transaction with a byte of its signature (bytes 10..73) changed: only a signature check can tell. */
    const forged = (t: Tx): Uint8Array => { const b = Uint8Array.from(t.bytes); b[12] ^= 1; return b }
    for (let n = 0; n < MAX_TXS_PER_SENDER; n++) pool.add((await transfer(0, n)).bytes, next, balanceOf)
    assert.equal(cache.misses, MAX_TXS_PER_SENDER)
    const past = await transfer(0, MAX_TXS_PER_SENDER)
    for (let i = 0; i < 100; i++) assert.throws(() => pool.add(forged(past), next, balanceOf), { name: 'SenderLimitError' })
    assert.throws(() => pool.add(past.bytes, next, balanceOf), { name: 'SenderLimitError' })
    const [stale, unpayable, first, other, gap] = await Promise.all([transfer(1, 4), transfer(2, 0), transfer(0, 0), transfer(3, 0), transfer(3, MAX_NONCE_AHEAD)])
    assert.throws(() => pool.add(first.bytes, next, balanceOf), { name: 'DuplicateTxError' })
    // None of those reached a signature check.
    assert.equal(cache.misses, MAX_TXS_PER_SENDER)
    // A forgery is refused as forged, whatever its nonce (used, skipping ahead, or next) or fee.
    for (const t of [stale, unpayable, other, gap]) assert.throws(() => pool.add(forged(t), next, balanceOf), { name: 'InvalidSignatureError' })
    assert.equal(cache.misses, MAX_TXS_PER_SENDER + 4)
    // The same transactions well signed meet the nonce and fee rules.
    assert.throws(() => pool.add(stale.bytes, next, balanceOf), { name: 'StaleNonceError' })
    assert.throws(() => pool.add(unpayable.bytes, next, balanceOf), { name: 'InsufficientFundsError' })
    assert.throws(() => pool.add(gap.bytes, next, balanceOf), { name: 'NonceGapError' })
    assert.equal(pool.size, MAX_TXS_PER_SENDER)
  })

  it('selects by fee, then arrival, each sender in nonce order (the heap agrees with a plain scan)', async () => {
    const pool = new Mempool(CHAIN)
    const fees = [3n, 1n, 3n, 2n, 5n, 1n]
    for (let i = 0; i < 18; i++) pool.add((await transfer(i % 6, Math.floor(i / 6), 7, 1n, fees[i % 6] + BigInt(Math.floor(i / 6)))).bytes, () => 0)
    const picked = pool.select(() => 0, 100, Infinity).map(b => decodeTx(b))
    // A plain scan: repeatedly the highest-fee head, first-arrived sender on ties.
    const heads = new Map<string, number>()
    const expected: Array<[string, number]> = []
    for (let k = 0; k < 18; k++) {
      let best: Tx | undefined
      for (let s = 0; s < 6; s++) {
        const n = heads.get(dids[s]) ?? 0
        if (n >= 3) continue
        const fee = fees[s] + BigInt(n)
        if (best == null || fee > best.payload.fee) best = { sender: dids[s], payload: { nonce: n, fee } } as unknown as Tx
      }
      expected.push([best!.sender, best!.payload.nonce])
      heads.set(best!.sender, best!.payload.nonce + 1)
    }
    assert.deepEqual(picked.map(t => [t.sender, t.payload.nonce]), expected)
    assert.equal(pool.select(() => 0, 5, Infinity).length, 5)
  })
})

// ---------------------------------------------------------------------------------------------
// A LedgerService on a stub network.

interface Harness { service: LedgerService, published: Array<{ topic: string, data: Uint8Array }>, store: Store, dir: string }

const harnesses: Harness[] = []
/** Each service's gossip port, to deliver messages as if peers had gossiped them. */
const gossipOf = new Map<LedgerService, RecordingGossip>()

function deliver (service: LedgerService, topic: string, data: Uint8Array): void {
  gossipOf.get(service)!.deliver(topic, data)
}

async function harness (key: Ed25519Key, genesis: Genesis): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-ledger-service-'))
  const store = await Store.open(dir)
  const gossip = recordingGossip()
  const published: Harness['published'] = gossip.published
  const service = ledger()({
    gossip,
    protocols: noNetwork(),
    didOf: () => undefined,
    identity: { did: didFromPublicKey(key.publicKey), key },
    store: store.sublevel('ledger'),
    genesis
  })
  gossipOf.set(service, gossip)
  const h = { service, published, store, dir }
  harnesses.push(h)
  await service.start()
  return h
}

after(async () => {
  for (const h of harnesses) {
    await h.service.stop()
    await h.store.close()
    await rm(h.dir, { recursive: true, force: true })
  }
})

async function heightReached (service: LedgerService, height: number): Promise<void> {
  while (service.state.height < height) await new Promise(resolve => setTimeout(resolve, 10))
}

describe('LedgerService on a stub network (one validator)', () => {
  const validator = ed25519KeyFromSeed(new Uint8Array(32).fill(77))
  const vdid = didFromPublicKey(validator.publicKey)
  const genesis: Genesis = {
    chain: CHAIN,
    time: 0,
    accounts: [{ id: vdid, balance: 0n, stake: STAKE_PER_POWER }, ...dids.slice(0, 6).map(id => ({ id, balance: 1_000_000n })), { id: dids[6], balance: 1n }]
  }

  it('verifies each transaction once from submission to commit, and gossips them in batches', async () => {
    const { service, published } = await harness(validator, genesis)
    const txs: Tx[] = []
    for (let i = 0; i < 60; i++) txs.push(await transfer(i % 6, Math.floor(i / 6)))
    for (const t of txs) await service.submit(t.bytes)
    await heightReached(service, 1)
    while (txs.some(t => service.state.accounts.get(t.sender)!.nonce <= t.payload.nonce)) await new Promise(resolve => setTimeout(resolve, 10))
    for (const t of txs) assert.equal((await service.txStatus(t.id)).status, 'committed')
    // Mempool, proposal, own proposal's check and commit: one verification each.
    assert.equal(service.txCache.misses, txs.length)
    // Committed, they are forgotten: the cache holds what is pending. A copy that comes again is
    // refused by the mempool's cheap rules (a used nonce) with no second signature check.
    assert.equal(service.txCache.size, 0)
    await assert.rejects(service.submit(txs[0].bytes), { name: 'StaleNonceError' })
    assert.equal(service.txCache.misses, txs.length)
    const batches = published.filter(p => p.topic === ledgerTopic(CHAIN, 'txs')).map(p => decodeTxBatch(p.data))
    assert.deepEqual(batches.flat().map(b => decodeTx(b).id).sort(), txs.map(t => t.id).sort())
    assert.ok(batches.length < txs.length)
  })

  it('charges a transaction that fails its fee, and drops what its sender can then no longer pay for', async () => {
    const { service } = await harness(validator, genesis)
    const fails = await transfer(6, 0, 0, 5n) // dids[6] holds 1: the fee, not the amount
    const unpayable = await transfer(6, 1, 0, 1n)
    await service.submit(fails.bytes)
    await service.submit(unpayable.bytes)
    while ((await service.txStatus(unpayable.id)).status === 'pending') await new Promise(resolve => setTimeout(resolve, 10))
    assert.deepEqual(await service.txStatus(fails.id), { status: 'rejected', error: 'InsufficientFundsError', message: 'balance 1 is less than 6' })
    assert.equal((await service.txStatus(unpayable.id) as { error: string }).error, 'InsufficientFundsError')
    assert.deepEqual(service.balance(dids[6]), { balance: 0n, nonce: 1, stake: 0n })
    assert.equal(service.balance(vdid).balance, 1n)
  })

  it('keeps the reasons of the last MAX_REJECTED_KEPT refused transactions', async () => {
    const { service } = await harness(validator, genesis)
    const poor = keys[7] // no account: cannot pay any fee
    const ids: string[] = []
    for (let n = 0; n <= MAX_REJECTED_KEPT; n++) {
      const t = await signTx(poor, { chain: CHAIN, nonce: 0, fee: 1n, kind: 'transfer', to: dids[0], amount: BigInt(n + 1) })
      await assert.rejects(service.submit(t.bytes), { name: 'InsufficientFundsError' })
      ids.push(t.id)
    }
    assert.deepEqual(await service.txStatus(ids[0]), { status: 'unknown' })
    assert.equal((await service.txStatus(ids[1])).status, 'rejected')
    assert.equal((await service.txStatus(ids[ids.length - 1])).status, 'rejected')
  })
})

describe('LedgerService on a stub network (one of four validators)', () => {
  it('executes only the scheduled proposer\'s proposals, and keeps at most MAX_EXECUTED_BLOCKS of them', async () => {
    const vkeys = Array.from({ length: 4 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(40 + i)))
    const vdids = vkeys.map(k => didFromPublicKey(k.publicKey))
    const genesis: Genesis = { chain: CHAIN, time: 0, accounts: vdids.map(id => ({ id, balance: 0n, stake: STAKE_PER_POWER })) }
    const { service } = await harness(vkeys[0], genesis)
    const state = genesisState(genesis)
    const topic = ledgerTopic(CHAIN, 'consensus')
    let sent = 0
    for (let round = 0; sent <= MAX_EXECUTED_BLOCKS; round++) {
      const who = proposer(state.validators, 1, round)
      if (who === vdids[0]) continue
      const key = vkeys[vdids.indexOf(who)]
      const { block } = buildBlock(state, [], who, 1 + round)
      // A validator out of turn proposes too: never executed.
      const other = vdids.findIndex((id, i) => id !== who && i !== 0)
      const wrong = buildBlock(state, [], vdids[other], 10_000 + round).block
      deliver(service, topic, await signProposal(vkeys[other], { height: 1, round, polRound: -1, value: blockHash(wrong.header) }, wrong))
      deliver(service, topic, await signProposal(key, { height: 1, round, polRound: -1, value: blockHash(block.header) }, block))
      sent++
      const expected = Math.min(sent, MAX_EXECUTED_BLOCKS)
      const deadline = Date.now() + 10_000
      while (service.executedBlocks < expected && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
      assert.equal(service.executedBlocks, expected)
    }
    assert.equal(service.state.height, 0)
  })
})

describe('evidence of double votes', () => {
  const vkeys = Array.from({ length: 4 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(90 + i)))
  const vdids = vkeys.map(k => didFromPublicKey(k.publicKey))
  const genesis: Genesis = { chain: CHAIN, time: 0, accounts: vdids.map(id => ({ id, balance: 0n, stake: STAKE_PER_POWER })) }
  const topic = ledgerTopic(CHAIN, 'consensus')
  const value = (n: number): string => n.toString(16).padStart(64, '0')
  const prevote = async (k: Ed25519Key, v: string | null, height = 1, round = 0): Promise<Uint8Array> => await signVote(k, { type: 'prevote', height, round, value: v })

  it('is kept from MAX_EVIDENCE_AGE_HEIGHTS behind our height to two ahead, and not past either end', () => {
    const ours = MAX_EVIDENCE_AGE_HEIGHTS + 50
    assert.equal(evidenceHeightKept(ours - MAX_EVIDENCE_AGE_HEIGHTS, ours), true)
    assert.equal(evidenceHeightKept(ours - MAX_EVIDENCE_AGE_HEIGHTS - 1, ours), false)
    assert.equal(evidenceHeightKept(ours + 2, ours), true)
    assert.equal(evidenceHeightKept(ours + 3, ours), false)
    assert.equal(evidenceHeightKept(1, 0), true)
  })

  it('a validator that sees a double vote stores it once and gossips it; every node that hears it keeps it, refusing what is not one', async () => {
    // A validator's consensus detects the double vote itself.
    const { service: v0, published } = await harness(vkeys[0], genesis)
    deliver(v0, topic, await prevote(vkeys[1], value(1)))
    deliver(v0, topic, await prevote(vkeys[1], value(2)))
    await once(v0, 'ledger:evidence')
    const sent = published.filter(m => m.topic === topic).map(m => decodeConsensusMessage(m.data)).filter(m => m.kind === 'evidence')
    assert.equal(sent.length, 1)
    assert.deepEqual(sent[0].kind === 'evidence' && [sent[0].evidence.validator, sent[0].evidence.height, sent[0].evidence.type], [vdids[1], 1, 'prevote'])

    // A follower that saw neither vote learns it from that message.
    const { service } = await harness(ed25519KeyFromSeed(new Uint8Array(32).fill(99)), genesis)
    let events = 0
    service.addEventListener('ledger:evidence', () => { events++ })
    const wait = async (): Promise<void> => { await once(service, 'ledger:evidence') }
    let seen = wait()
    deliver(service, topic, published.filter(m => m.topic === topic && decodeConsensusMessage(m.data).kind === 'evidence')[0].data)
    await seen
    // The same double vote again, in the other order: kept once. Then what is not a double vote.
    const a = await prevote(vkeys[1], value(1))
    const b = await prevote(vkeys[1], value(2))
    deliver(service, topic, encodeEvidenceMessage(b, a))
    deliver(service, topic, dagCbor.encode({ evidence: [b, a] }))
    deliver(service, topic, encodeEvidenceMessage(a, a)) // one vote twice
    deliver(service, topic, encodeEvidenceMessage(a, await prevote(vkeys[2], value(2)))) // two validators
    deliver(service, topic, encodeEvidenceMessage(a, await signVote(vkeys[1], { type: 'precommit', height: 1, round: 0, value: value(2) }))) // two steps
    deliver(service, topic, encodeEvidenceMessage(await prevote(vkeys[1], value(1), 1, 1), b)) // two rounds
    const stranger = ed25519KeyFromSeed(new Uint8Array(32).fill(98))
    deliver(service, topic, encodeEvidenceMessage(await prevote(stranger, value(1)), await prevote(stranger, value(2)))) // not a validator
    deliver(service, topic, encodeEvidenceMessage(await prevote(vkeys[2], value(1), 3), await prevote(vkeys[2], value(2), 3))) // beyond height + 2
    const forged = Uint8Array.from(b)
    forged[12] ^= 1
    deliver(service, topic, encodeEvidenceMessage(a, forged)) // a bad signature
    deliver(service, topic, dagCbor.encode({ evidence: [a] }))
    deliver(service, topic, dagCbor.encode({ evidence: [a, b], extra: 1 }))
    // Messages are taken in order: once this one is in, every one before it was decided.
    seen = wait()
    deliver(service, topic, encodeEvidenceMessage(await prevote(vkeys[3], null), await prevote(vkeys[3], value(3))))
    await seen
    assert.equal(events, 2)
    const kept = await service.evidence()
    assert.deepEqual(kept.map(e => [e.validator, e.height, e.round, e.type, [...e.values].sort()]).sort(), [
      [vdids[1], 1, 0, 'prevote', [value(1), value(2)]],
      [vdids[3], 1, 0, 'prevote', [null, value(3)].sort()]
    ].sort())
  })
})

describe('LedgerService on a stub network (a follower): gossiped transactions', () => {
  // Not a validator: no block is made, so the mempool holds exactly what the inbox let in.
  const validator = ed25519KeyFromSeed(new Uint8Array(32).fill(77))
  const follower = ed25519KeyFromSeed(new Uint8Array(32).fill(78))
  const genesis: Genesis = {
    chain: CHAIN,
    time: 0,
    accounts: [{ id: didFromPublicKey(validator.publicKey), balance: 0n, stake: STAKE_PER_POWER }, ...dids.slice(0, 6).map(id => ({ id, balance: 1_000_000n }))]
  }
  const topic = ledgerTopic(CHAIN, 'txs')

  /** Lets the event loop turn until the inbox is empty (at most `turns` times); returns the turns taken. */
  async function drain (service: LedgerService, turns = 100_000): Promise<number> {
    let n = 0
    while (service.inboxSize > 0 && n < turns) {
      await new Promise(resolve => setImmediate(resolve))
      n++
    }
    assert.equal(service.inboxSize, 0, `inbox still holds ${service.inboxSize} after ${n} turns`)
    return n
  }

  /** Transactions no mempool takes: another chain, a broken signature, a sender with no account. */
  async function invalid (): Promise<Uint8Array[]> {
    const other = await signTx(keys[0], { chain: 'another-chain', nonce: 0, fee: 1n, kind: 'transfer', to: dids[1], amount: 1n })
    // A byte of the signature (which starts at byte 10), so only the signature check refuses it.
    const broken = Uint8Array.from((await transfer(1, 50)).bytes)
    broken[12] ^= 1
    const poor = await transfer(7, 0)
    return [other.bytes, broken, poor.bytes]
  }

  it('are checked into the mempool on later turns of the event loop, not during onGossip', async () => {
    const { service } = await harness(follower, genesis)
    assert.equal(service.isValidator, false)
    const valid: Tx[] = []
    for (let i = 0; i < 60; i++) valid.push(await transfer(i % 6, Math.floor(i / 6)))
    const bad = await invalid()
    const batch = [...valid.slice(0, 30).map(t => t.bytes), ...bad, ...valid.slice(30).map(t => t.bytes)]
    deliver(service, topic, encodeTxBatch(batch))
    // Queued, none checked yet.
    assert.equal(service.inboxSize, batch.length)
    assert.equal(service.mempool.size, 0)
    assert.equal(service.txCache.misses, 0)
    await drain(service)
    assert.equal(service.mempool.size, valid.length)
    for (const t of valid) assert.ok(service.mempool.has(t.id), t.id)
    // The valid ones, the broken signature and the unfunded sender cost a signature check each
    // (the signature comes before the account's rules); the other chain is refused before its.
    assert.equal(service.txCache.misses, valid.length + 2)
    assert.equal(service.txCache.size, valid.length + 1)
    // The same batch again: nothing added, nothing well signed verified twice (the broken one failed
    // verification, is not remembered, and so is checked again).
    deliver(service, topic, encodeTxBatch(batch))
    assert.equal(service.inboxSize, batch.length)
    await drain(service)
    assert.equal(service.mempool.size, valid.length)
    assert.equal(service.txCache.misses, valid.length + 3)
    // Each refusal counted by its reason.
    assert.deepEqual(service.status().gossipRefused, { WrongChainError: 2, InvalidSignatureError: 2, InsufficientFundsError: 2, DuplicateTxError: valid.length })
    // What is not a batch never reaches the inbox.
    deliver(service, topic, Uint8Array.of(0xff, 1, 2))
    deliver(service, topic, dagCbor.encode(['text']))
    assert.equal(service.inboxSize, 0)
  })

  it('hold at most MAX_TX_INBOX waiting; a batch that would go past it is dropped whole', async () => {
    const { service } = await harness(follower, genesis)
    const valid: Tx[] = []
    for (let i = 0; i < 12; i++) valid.push(await transfer(i % 6, Math.floor(i / 6)))
    // The inbox does not look for repeats: the same few transactions fill it.
    const pool = [...valid.map(t => t.bytes), ...await invalid()]
    const longest = Math.max(...pool.map(b => b.length))
    const perBatch = Math.min(MAX_TX_BATCH_TXS, Math.floor(MAX_TX_BATCH_BYTES / longest))
    const batchOf = (n: number): Uint8Array => encodeTxBatch(Array.from({ length: n }, (_, i) => pool[i % pool.length]))
    const full = batchOf(perBatch)
    assert.equal(decodeTxBatch(full).length, perBatch)
    // No await between these: nothing is checked while the inbox fills.
    let expected = 0
    while (expected + perBatch <= MAX_TX_INBOX) {
      deliver(service, topic, full)
      expected += perBatch
      assert.equal(service.inboxSize, expected)
    }
    // One more full batch goes past the bound: dropped, none of it kept.
    deliver(service, topic, full)
    assert.equal(service.inboxSize, expected)
    const rest = MAX_TX_INBOX - expected
    assert.ok(rest < perBatch)
    // One over what is left: dropped; exactly what is left: taken, up to the bound; then nothing more.
    deliver(service, topic, batchOf(rest + 1))
    assert.equal(service.inboxSize, expected)
    if (rest > 0) deliver(service, topic, batchOf(rest))
    assert.equal(service.inboxSize, MAX_TX_INBOX)
    deliver(service, topic, batchOf(1))
    assert.equal(service.inboxSize, MAX_TX_INBOX)
    assert.equal(service.mempool.size, 0)

    await drain(service)
    assert.equal(service.mempool.size, valid.length)
    for (const t of valid) assert.ok(service.mempool.has(t.id))
    // Drained, it takes batches again.
    const more: Tx[] = []
    for (let i = 0; i < 6; i++) more.push(await transfer(i, 2))
    deliver(service, topic, encodeTxBatch(more.map(t => t.bytes)))
    assert.equal(service.inboxSize, more.length)
    await drain(service)
    assert.equal(service.mempool.size, valid.length + more.length)
  })

  it('stop() with transactions waiting empties the inbox and checks none of them', async () => {
    const { service } = await harness(follower, genesis)
    const txs: Tx[] = []
    for (let i = 0; i < 12; i++) txs.push(await transfer(i % 6, Math.floor(i / 6)))
    deliver(service, topic, encodeTxBatch(txs.map(t => t.bytes)))
    assert.equal(service.inboxSize, txs.length)
    await service.stop()
    assert.equal(service.inboxSize, 0)
    // The check that was due does not run after the stop.
    for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
    assert.equal(service.mempool.size, 0)
    assert.equal(service.txCache.misses, 0)
  })
})

describe('the mempool protocol between real libp2p peers on loopback', () => {
  const vkey = ed25519KeyFromSeed(new Uint8Array(32).fill(120))
  const vdid = didFromPublicKey(vkey.publicKey)
  // Enough senders for MAX_MEMPOOL_STREAM_QUEUE + 2 full batches under the per-sender limit.
  const senders = Array.from({ length: 160 }, (_, i) => ed25519KeyFromSeed(Uint8Array.from({ length: 32 }, (_, j) => j === 0 ? i : j === 1 ? 201 : 7)))
  const senderDids = senders.map(k => didFromPublicKey(k.publicKey))
  // A second validator that never runs: `vkey` alone holds half the power, so no block commits and
  // every mempool keeps what it took in.
  const offline = didFromPublicKey(ed25519KeyFromSeed(new Uint8Array(32).fill(123)).publicKey)
  const genesis: Genesis = {
    chain: CHAIN,
    time: 0,
    accounts: [
      { id: vdid, balance: 0n, stake: STAKE_PER_POWER }, { id: offline, balance: 0n, stake: STAKE_PER_POWER },
      ...dids.slice(0, 6).map(id => ({ id, balance: 1_000_000_000n })), ...senderDids.map(id => ({ id, balance: 1_000_000_000n }))
    ]
  }
  const cleanups: Array<() => Promise<void>> = []
  after(async () => { for (const c of cleanups.reverse()) await c() })

  /** A started libp2p peer and a LedgerService on it (a validator with `vkey`, else a follower). */
  async function peer (key: Ed25519Key, didOf?: (peerId: string) => string | undefined): Promise<{ net: Network, service: LedgerService, published: Array<{ topic: string, data: Uint8Array }> }> {
    const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false })
    await net.start()
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-mempool-'))
    const store = await Store.open(dir)
    const gossip = recordingGossip()
    const published = gossip.published
    const service = ledger()({
      gossip, protocols: libp2pProtocols(net), didOf: didOf ?? (() => undefined), identity: { did: didFromPublicKey(key.publicKey), key }, store: store.sublevel('ledger'), genesis
    })
    gossipOf.set(service, gossip)
    await service.start()
    cleanups.push(async () => { await service.stop(); await net.stop(); await store.close(); await rm(dir, { recursive: true, force: true }) })
    return { net, service, published }
  }

  const frameLimit = MAX_TX_BATCH_MESSAGE_BYTES

  /** A validator and a follower, connected, with the validator's mempool stream to it open (one transaction through). */
  async function linked (followerSeed: number, first: Tx): Promise<{ v: Awaited<ReturnType<typeof peer>>, f: Awaited<ReturnType<typeof peer>> }> {
    const v = await peer(vkey)
    const f = await peer(ed25519KeyFromSeed(new Uint8Array(32).fill(followerSeed)))
    await v.net.dial(f.net.getMultiaddrs()[0])
    // While the stream is being dialled, batches go over GossipSub as well.
    await v.service.submit(first.bytes)
    while (!f.service.mempool.has(first.id)) await new Promise(resolve => setTimeout(resolve, 10))
    return { v, f }
  }

  it('carries a validator\'s batches straight to a neighbour, which checks them in and forwards nothing; refuses an oversized or malformed frame by ending the stream', async () => {
    const { v, f } = await linked(121, await transfer(5, 0))
    const before = v.published.length
    const txs: Tx[] = []
    for (let i = 0; i < 40; i++) txs.push(await transfer(i % 5, Math.floor(i / 5)))
    for (const t of txs) await v.service.submit(t.bytes)
    // The batch goes when TX_BATCH_INTERVAL_MS is up: wait for the follower to hold every one.
    while (!txs.every(t => f.service.mempool.has(t.id))) await new Promise(resolve => setTimeout(resolve, 10))
    assert.equal(v.published.slice(before).filter(m => m.topic === ledgerTopic(CHAIN, 'txs')).length, 0, 'not over GossipSub')
    assert.equal(f.published.filter(m => m.topic === ledgerTopic(CHAIN, 'txs')).length, 0, 'not forwarded')
    // The protocol is the chain's: a peer on another chain does not speak ours.
    assert.ok(f.net.getProtocols().includes(mempoolProtocol(CHAIN)))
    assert.notEqual(mempoolProtocol(CHAIN), mempoolProtocol('another-chain'))

    // A frame over the limit, then a frame that is not a batch: each ends its stream; the peer goes on.
    for (const frame of [new Uint8Array(frameLimit + 1), Uint8Array.of(0xff, 1, 2)]) {
      const stream = await f.net.dialProtocol(v.net.peerId, mempoolProtocol(CHAIN))
      const lp = lpStream(stream, { maxDataLength: frameLimit * 2 })
      await lp.write(frame)
      await assert.rejects(lp.read())
    }
    const more = await transfer(0, 7)
    const stream = await f.net.dialProtocol(v.net.peerId, mempoolProtocol(CHAIN))
    await lpStream(stream).write(encodeTxBatch([more.bytes]))
    while (!v.service.mempool.has(more.id)) await new Promise(resolve => setTimeout(resolve, 10))
    await stream.close()
  })

  it('the consensus protocol takes messages only from a peer bound to a validator: a follower\'s stream is ended unread', { timeout: 60_000 }, async () => {
    const fkey = ed25519KeyFromSeed(new Uint8Array(32).fill(124))
    const bound = new Map<string, string>()
    const v = await peer(vkey, id => bound.get(id))
    const f = await peer(fkey)
    await f.net.dial(v.net.getMultiaddrs()[0])
    // The follower's binding is known (it is somebody), but it is not one of the chain's validators.
    bound.set(f.net.peerId.toString(), didFromPublicKey(fkey.publicKey))
    const vote = await signVote(fkey, { type: 'prevote', height: 1, round: 0, value: null })
    const stream = await f.net.dialProtocol(v.net.peerId, consensusProtocol(CHAIN))
    const lp = lpStream(stream)
    // Ended at once: the write or the read after it fails.
    await assert.rejects(async () => { await lp.write(vote); await lp.read() })
    assert.equal(v.service.consensusReceived.direct, 0)
  })

  it('sends again the other validators\' votes it holds while no block commits, not only its own', { timeout: 60_000 }, async () => {
    const v = await peer(vkey)
    // The offline validator's prevote reaches v (over GossipSub here), and no block can commit.
    const theirs = await signVote(ed25519KeyFromSeed(new Uint8Array(32).fill(123)), { type: 'prevote', height: 1, round: 0, value: null })
    deliver(v.service, ledgerTopic(CHAIN, 'consensus'), theirs)
    const resent = (): boolean => v.published.some(m => m.topic === ledgerTopic(CHAIN, 'consensus') && Buffer.compare(m.data, theirs) === 0)
    while (!resent()) await new Promise(resolve => setTimeout(resolve, 50))
    // A vote by a peer that is not a validator is not kept, so it is never sent on.
    const stranger = await signVote(ed25519KeyFromSeed(new Uint8Array(32).fill(125)), { type: 'prevote', height: 1, round: 0, value: null })
    deliver(v.service, ledgerTopic(CHAIN, 'consensus'), stranger)
    const count = (): number => v.published.filter(m => Buffer.compare(m.data, theirs) === 0).length
    const n = count()
    while (count() === n) await new Promise(resolve => setTimeout(resolve, 50))
    assert.ok(!v.published.some(m => Buffer.compare(m.data, stranger) === 0), 'a stranger\'s vote was sent on')
  })

  it('queues at most MAX_MEMPOOL_STREAM_QUEUE batches for a peer; past that, GossipSub carries them', async () => {
    const { v, f } = await linked(122, await transfer(0, 0))
    const before = v.published.length
    // Full batches flush at once, in one turn of the event loop, faster than the stream drains.
    const perBatch = Math.floor(MAX_TX_BATCH_BYTES / (await transfer(0, 0)).bytes.length)
    const batches = MAX_MEMPOOL_STREAM_QUEUE + 2
    const signed: Tx[] = []
    // Rising fees: past the backlog a submission is refused (MAX_BACKLOG_BYTES) unless it pays more than the cheapest waiting.
    for (let i = 0; i < perBatch * batches; i++) {
      signed.push(await signTx(senders[i % senders.length], { chain: CHAIN, nonce: Math.floor(i / senders.length), fee: BigInt(1 + i), kind: 'transfer', to: dids[0], amount: 1n }))
    }
    await Promise.all(signed.map(async t => { await v.service.submit(t.bytes) }))
    const overflow = v.published.slice(before).filter(m => m.topic === ledgerTopic(CHAIN, 'txs')).length
    assert.ok(overflow >= 1 && overflow < batches, `${overflow} of ${batches} batches went over GossipSub`)
    // Every other transaction reaches the peer over the stream (the last, partial batch goes by
    // timer, whichever way): nothing is lost between the two.
    const idOf = new Map(signed.map(t => [Buffer.from(t.bytes).toString('base64'), t.id]))
    const gossiped = (): Set<string> => new Set(v.published.filter(m => m.topic === ledgerTopic(CHAIN, 'txs')).flatMap(m => decodeTxBatch(m.data)).map(b => idOf.get(Buffer.from(b).toString('base64'))!))
    while (!signed.every(t => f.service.mempool.has(t.id) || gossiped().has(t.id))) await new Promise(resolve => setTimeout(resolve, 20))
    assert.ok(f.service.mempool.size >= perBatch * (MAX_MEMPOOL_STREAM_QUEUE - 1), `${f.service.mempool.size} arrived over the stream`)
  })
})
