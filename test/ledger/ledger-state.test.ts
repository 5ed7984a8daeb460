/**
 * The ledger's rules and its state commitment: transactions decode or fail by name; blocks hold
 * only includable transactions (the next nonce, a payable fee) and apply with one receipt per
 * transaction and named reasons, a failed one paying its fee; a model-based property run (an independent
 * plain-map model of the rules) checks supply, signs, nonces and the whole state after every
 * block; and a light client checks balances and ownership against a header's stateRoot while a
 * lying server tries every way it can think of to mislead it.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { recordCidSync, signRecord } from '../../src/identity/record.ts'
import {
  decodeTx, signTx, TX_TYPE, MAX_TX_BYTES, MAX_AMOUNT, MAX_GRID, MAX_PARCEL_SIDE, MAX_NAME_LENGTH,
  type Tx, type TxOp, type TxPayload
} from '../../src/ledger/tx.ts'
import {
  applyBlock, blockHash, buildBlock, checkBlock, decodeAccountValue, decodeOwner, genesisState, proveKey,
  stateRoot, totalSupply, txRoot, validatorsHash, MAX_BLOCK_TXS, STAKE_PER_POWER, VALIDATOR_UPDATE_DELAY,
  type Block, type LedgerState, type Receipt, type Validator
} from '../../src/ledger/state.ts'
import { hashCounts, leafHash, MerkleTree, verifyStateProof, type InclusionProof, type Leaf, type StateProof } from '../../src/ledger/merkle.ts'
import { decodeSpaceValue } from '../../src/ledger/land.ts'
import { createDescriptor } from '../../src/space/records.ts'
import { seeded } from '../helpers/random.ts'

const CHAIN = 'peerverse-test'
const keys: Ed25519Key[] = Array.from({ length: 7 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(i + 1)))
const dids = keys.map(k => didFromPublicKey(k.publicKey))
const [A, B, C] = dids
const CONTENT: CID = recordCidSync(new TextEncoder().encode('a hat'))
/** Real space descriptors (256 x 256): the plaza is A's, the garden B's. */
const PLAZA = await createDescriptor(keys[0], { name: 'plaza', created: 1 })
const GARDEN = await createDescriptor(keys[1], { name: 'garden', created: 1 })

async function tx (key: Ed25519Key, nonce: number, op: TxOp, fee = 1n): Promise<Tx> {
  return await signTx(key, { chain: CHAIN, nonce, fee, ...op } as TxPayload)
}

/** A correctly signed peerverse/tx record over any payload, bypassing signTx's checks. */
async function rawTx (payload: unknown, key = keys[0]): Promise<Uint8Array> {
  return (await signRecord(key, TX_TYPE, payload)).bytes
}

const base = (nonce = 0): Record<string, unknown> => ({ chain: CHAIN, nonce, fee: 1 })

function genesis (balances: Array<[string, bigint, bigint?]>): LedgerState {
  return genesisState({ chain: CHAIN, time: 0, accounts: balances.map(([id, balance, stake]) => ({ id, balance, ...(stake != null ? { stake } : {}) })) })
}

/** Builds a block (as a proposer) and has another node check it; returns both views' agreement. */
function step (state: LedgerState, txs: Tx[], proposer = C, time = (state.height + 1) * 1000): { block: Block, state: LedgerState, receipts: Receipt[] } {
  const built = buildBlock(state, txs.map(t => t.bytes), proposer, time)
  const checked = checkBlock(state, built.block)
  assert.equal(stateRoot(checked.state), built.block.header.stateRoot)
  assert.deepEqual(checked.receipts, built.receipts)
  return built
}

const errorsOf = (receipts: Receipt[]): Array<string | undefined> => receipts.map(r => r.ok ? undefined : r.error)

describe('ledger transactions', () => {
  const ops: TxOp[] = [
    { kind: 'transfer', to: B, amount: 5n },
    { kind: 'mint', content: CONTENT, name: 'hat' },
    { kind: 'asset-transfer', asset: 'bafyasset', to: B },
    { kind: 'claim', space: 'plaza', x: 1, y: 2, w: 3, h: 4 },
    { kind: 'claim', space: PLAZA.id, x: 1, y: 2, w: 3, h: 4, record: PLAZA.bytes },
    { kind: 'claim', space: PLAZA.id, x: 1, y: 2, w: 3, h: 4, maxPrice: 7n },
    { kind: 'parcel-transfer', parcel: 'bafyparcel', to: B },
    { kind: 'stake', amount: MAX_AMOUNT },
    { kind: 'unstake', amount: 1n },
    { kind: 'land-grant', space: PLAZA.id, to: B, x: 0, y: 0, w: 16, h: 16, record: PLAZA.bytes },
    { kind: 'land-grant', space: PLAZA.id, to: B, x: 0, y: 0, w: 16, h: 16 },
    { kind: 'land-revoke', grant: 'bafygrant' },
    { kind: 'land-price', space: PLAZA.id, price: 5n, record: PLAZA.bytes }
  ]
  for (const op of ops) {
    it(`signs and decodes a ${op.kind} round trip`, async () => {
      const t = await tx(keys[0], 7, op, 3n)
      assert.equal(t.sender, A)
      assert.ok(t.bytes.length <= MAX_TX_BYTES)
      const d = decodeTx(t.bytes, CHAIN)
      assert.equal(d.id, t.id)
      assert.equal(d.sender, A)
      assert.deepEqual(d.bytes, t.bytes)
      // CIDs compared as strings, a carried space record as hex (the signer may hold a Buffer).
      const plain = (q: TxPayload): Record<string, unknown> => ({ ...q, ...(q.kind === 'mint' ? { content: q.content.toString() } : {}), ...('record' in q && q.record != null ? { record: Buffer.from(q.record).toString('hex') } : {}) })
      assert.deepEqual(plain(d.payload), plain(t.payload))
      assert.equal(typeof d.payload.fee, 'bigint')
      if ('amount' in d.payload) assert.equal(typeof d.payload.amount, 'bigint')
      // Without a chain to check, any chain decodes.
      assert.equal(decodeTx(t.bytes).id, t.id)
    })
  }

  it('decodes the same bytes to the same id whoever decodes them (property)', async () => {
    await fc.assert(fc.asyncProperty(fc.nat({ max: 6 }), fc.nat({ max: 1000 }), fc.bigInt({ min: 1n, max: MAX_AMOUNT }), fc.bigInt({ min: 1n, max: MAX_AMOUNT }),
      async (k, nonce, fee, amount) => {
        const t = await tx(keys[k], nonce, { kind: 'transfer', to: dids[(k + 1) % 7], amount }, fee)
        const d = decodeTx(t.bytes, CHAIN)
        assert.equal(d.id, t.id)
        assert.equal(d.sender, dids[k])
        assert.deepEqual(d.payload, t.payload)
      }), { seed: 42, numRuns: 100 })
  })

  it('rejects a transaction for another chain with WrongChainError', async () => {
    const t = await tx(keys[0], 0, { kind: 'transfer', to: B, amount: 1n })
    assert.throws(() => decodeTx(t.bytes, 'peerverse-main'), { name: 'WrongChainError' })
  })

  const malformed: Array<[string, Record<string, unknown>]> = [
    ['an unknown kind', { ...base(), kind: 'burn', amount: 1 }],
    ['no kind', { ...base(), to: B, amount: 1 }],
    ['an unknown field', { ...base(), kind: 'transfer', to: B, amount: 1, memo: 'hi' }],
    ['a field of another kind', { ...base(), kind: 'stake', amount: 1, to: B }],
    ['a missing field', { ...base(), kind: 'transfer', to: B }],
    ['amount 0', { ...base(), kind: 'transfer', to: B, amount: 0 }],
    ['a negative amount', { ...base(), kind: 'transfer', to: B, amount: -5 }],
    ['an amount over MAX_AMOUNT', { ...base(), kind: 'transfer', to: B, amount: MAX_AMOUNT + 1n }],
    ['an amount of 2^64 - 1', { ...base(), kind: 'stake', amount: (1n << 64n) - 1n }],
    ['a float amount', { ...base(), kind: 'transfer', to: B, amount: 1.5 }],
    ['a string amount', { ...base(), kind: 'transfer', to: B, amount: '5' }],
    ['a float fee', { ...base(), kind: 'transfer', to: B, amount: 1, fee: 1.25 }],
    ['fee 0 (below MIN_FEE)', { ...base(), kind: 'transfer', to: B, amount: 1, fee: 0 }],
    ['no fee', { chain: CHAIN, nonce: 0, kind: 'transfer', to: B, amount: 1 }],
    ['a negative nonce', { ...base(-1), kind: 'transfer', to: B, amount: 1 }],
    ['a float nonce', { ...base(0.5), kind: 'transfer', to: B, amount: 1 }],
    ['an empty chain', { ...base(), chain: '', kind: 'transfer', to: B, amount: 1 }],
    ['a did:web recipient', { ...base(), kind: 'transfer', to: 'did:web:example.com', amount: 1 }],
    ['a truncated did:key recipient', { ...base(), kind: 'asset-transfer', asset: 'x', to: B.slice(0, -3) }],
    ['a numeric recipient', { ...base(), kind: 'parcel-transfer', parcel: 'x', to: 42 }],
    ['a mint without a CID', { ...base(), kind: 'mint', content: 'bafy-not-a-cid', name: 'hat' }],
    ['a mint with an empty name', { ...base(), kind: 'mint', content: CONTENT, name: '' }],
    ['a mint with an overlong name', { ...base(), kind: 'mint', content: CONTENT, name: 'n'.repeat(MAX_NAME_LENGTH + 1) }],
    ['a parcel left of the grid', { ...base(), kind: 'claim', space: 'plaza', x: -1, y: 0, w: 1, h: 1 }],
    ['a parcel right of the grid', { ...base(), kind: 'claim', space: 'plaza', x: MAX_GRID, y: 0, w: 1, h: 1 }],
    ['a parcel below the grid', { ...base(), kind: 'claim', space: 'plaza', x: 0, y: MAX_GRID, w: 1, h: 1 }],
    ['a parcel of width 0', { ...base(), kind: 'claim', space: 'plaza', x: 0, y: 0, w: 0, h: 1 }],
    ['a parcel wider than MAX_PARCEL_SIDE', { ...base(), kind: 'claim', space: 'plaza', x: 0, y: 0, w: 1, h: MAX_PARCEL_SIDE + 1 }],
    ['a parcel at a fractional cell', { ...base(), kind: 'claim', space: 'plaza', x: 0.5, y: 0, w: 1, h: 1 }],
    ['a payload that is a list', [] as unknown as Record<string, unknown>],
    ['a payload that is a string', 'transfer' as unknown as Record<string, unknown>]
  ]
  for (const [what, payload] of malformed) {
    it(`rejects ${what} with MalformedTxError`, async () => {
      const bytes = await rawTx(payload)
      assert.throws(() => decodeTx(bytes, CHAIN), { name: 'MalformedTxError' })
      // signTx checks the same rules before signing.
      await assert.rejects(signTx(keys[0], payload as unknown as TxPayload), { name: 'MalformedTxError' })
    })
  }

  it('rejects a kind named after an Object.prototype member with MalformedTxError', async () => {
    for (const kind of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const bytes = await rawTx({ ...base(), kind })
      assert.throws(() => decodeTx(bytes, CHAIN), { name: 'MalformedTxError' }, kind)
    }
  })

  it('rejects a parcel that runs off the edge of the grid with MalformedTxError', async () => {
    const edge = { ...base(), kind: 'claim', space: 'plaza', x: MAX_GRID - 1, y: 0, w: 2, h: 1 }
    const edgeBytes = await rawTx(edge)
    assert.throws(() => decodeTx(edgeBytes, CHAIN), { name: 'MalformedTxError' })
    const corner = { ...base(), kind: 'claim', space: 'plaza', x: 0, y: MAX_GRID - 10, w: 1, h: MAX_PARCEL_SIDE }
    const cornerBytes = await rawTx(corner)
    assert.throws(() => decodeTx(cornerBytes, CHAIN), { name: 'MalformedTxError' })
  })

  it('accepts a parcel that ends exactly at the edge of the grid', async () => {
    const t = await tx(keys[0], 0, { kind: 'claim', space: 'plaza', x: MAX_GRID - MAX_PARCEL_SIDE, y: MAX_GRID - 1, w: MAX_PARCEL_SIDE, h: 1 })
    assert.equal(decodeTx(t.bytes, CHAIN).id, t.id)
  })

  it('rejects every one-byte mutation by name (exhaustive over positions)', async () => {
    // The chain id is checked before the signature, so a flip inside it is WrongChainError.
    const allowed = new Set(['InvalidSignatureError', 'MalformedRecordError', 'NonCanonicalEncodingError', 'InvalidDidError', 'UnexpectedRecordTypeError', 'MalformedTxError', 'WrongChainError', 'InvalidSpaceRecordError'])
    for (const op of ops) {
      const t = await tx(keys[0], 3, op)
      for (let i = 0; i < t.bytes.length; i++) {
        for (const flip of [0x01, 0x80, 0xff]) {
          const bad = Uint8Array.from(t.bytes)
          bad[i] ^= flip
          assert.throws(() => decodeTx(bad, CHAIN), (err: Error) => {
            assert.ok(allowed.has(err.name), `byte ${i} ^ ${flip} of a ${op.kind}: ${err.name}: ${err.message}`)
            return true
          })
        }
      }
      // Truncations and an extra byte too.
      for (const bad of [t.bytes.subarray(0, t.bytes.length - 1), t.bytes.subarray(0, 10), Uint8Array.of(...t.bytes, 0)]) {
        assert.throws(() => decodeTx(bad, CHAIN), (err: Error) => allowed.has(err.name))
      }
    }
  })

  it('rejects a re-signed record of another type, and what is not a record at all', async () => {
    const other = (await signRecord(keys[0], 'peerverse/post', { ...base(), kind: 'transfer', to: B, amount: 1 })).bytes
    assert.throws(() => decodeTx(other, CHAIN), { name: 'UnexpectedRecordTypeError' })
    assert.throws(() => decodeTx(new Uint8Array(0), CHAIN), { name: 'MalformedRecordError' })
    assert.throws(() => decodeTx(dagCbor.encode([1, 2, 3]), CHAIN), { name: 'MalformedRecordError' })
  })

  it('rejects a transaction over MAX_TX_BYTES', async () => {
    const big = await rawTx({ ...base(), kind: 'mint', content: CONTENT, name: 'n'.repeat(MAX_TX_BYTES) })
    assert.ok(big.length > MAX_TX_BYTES)
    assert.throws(() => decodeTx(big, CHAIN), { name: 'RecordTooLargeError' })
    assert.throws(() => decodeTx(new Uint8Array(MAX_TX_BYTES + 1), CHAIN), { name: 'RecordTooLargeError' })
  })
})

describe('applying blocks', () => {
  it('applies transfers in order within a block, with fees to the proposer', async () => {
    const s0 = genesis([[A, 1000n], [B, 10n]])
    const t1 = await tx(keys[0], 0, { kind: 'transfer', to: B, amount: 100n }, 2n)
    const t2 = await tx(keys[0], 1, { kind: 'transfer', to: dids[5], amount: 50n }, 3n)
    const t3 = await tx(keys[1], 0, { kind: 'transfer', to: A, amount: 105n }, 1n) // spends what t1 gave
    const { state, receipts, block } = step(s0, [t1, t2, t3], C)
    assert.deepEqual(receipts.map(r => [r.tx, r.sender, r.height, r.ok]), [[t1.id, A, 1, true], [t2.id, A, 1, true], [t3.id, B, 1, true]])
    assert.deepEqual(state.accounts.get(A), { balance: 1000n - 100n - 2n - 50n - 3n + 105n, nonce: 2, stake: 0n })
    assert.deepEqual(state.accounts.get(B), { balance: 10n + 100n - 105n - 1n, nonce: 1, stake: 0n })
    assert.deepEqual(state.accounts.get(dids[5]), { balance: 50n, nonce: 0, stake: 0n })
    assert.deepEqual(state.accounts.get(C), { balance: 6n, nonce: 0, stake: 0n })
    assert.equal(totalSupply(state), totalSupply(s0))
    assert.equal(state.height, 1)
    assert.equal(state.lastBlock, blockHash(block.header))
    assert.equal(block.header.txRoot, txRoot([t1.id, t2.id, t3.id]))
    // The proposer pays itself: a self-proposed block moves nothing but the amount.
    const t4 = await tx(keys[0], 2, { kind: 'transfer', to: B, amount: 1n }, 9n)
    const s2 = step(state, [t4], A).state
    assert.equal(s2.accounts.get(A)?.balance, state.accounts.get(A)!.balance - 1n)
  })

  it('an empty block changes nothing but height and lastBlock', () => {
    const s0 = genesis([[A, 1000n]])
    const { state, receipts } = step(s0, [])
    assert.deepEqual(receipts, [])
    assert.equal(stateRoot(state), stateRoot(s0))
    assert.equal(state.height, 1)
    assert.equal(state.accounts.has(C), false)
  })

  it('leaves out what no block may hold (a used or skipped nonce, an unpayable fee), and a block holding one is invalid', async () => {
    const s0 = genesis([[A, 1000n], [B, 5n]])
    const ok = await tx(keys[0], 0, { kind: 'transfer', to: B, amount: 10n })
    const s1 = step(s0, [ok]).state
    const excluded = [
      await tx(keys[0], 0, { kind: 'transfer', to: B, amount: 11n }), // nonce 0 was used
      ok, // the very same transaction again
      await tx(keys[0], 2, { kind: 'transfer', to: B, amount: 1n }), // skips nonce 1
      await tx(keys[0], 1000, { kind: 'stake', amount: 1n }),
      await tx(keys[0], 1, { kind: 'mint', content: CONTENT, name: 'hat' }, 990n), // the fee alone is more than the balance
      await tx(keys[3], 0, { kind: 'transfer', to: A, amount: 1n }) // an account that does not exist pays no fee
    ]
    const built = buildBlock(s1, excluded.map(t => t.bytes), C, 2000)
    assert.deepEqual(built.skipped.map(x => [x.tx, x.error]), excluded.map((t, i) => [t.id, ['NonceReusedError', 'NonceReusedError', 'NonceGapError', 'NonceGapError', 'InsufficientFundsError', 'InsufficientFundsError'][i]]))
    for (const x of built.skipped) assert.equal(typeof x.message, 'string')
    assert.deepEqual(built.block.txs, [])
    assert.deepEqual(built.receipts, [])
    // Nothing changed: no fee paid, no nonce used, not even the proposer's account created.
    assert.equal(stateRoot(built.state), stateRoot(s1))
    assert.deepEqual([...built.state.accounts], [...s1.accounts])
    assert.equal(built.state.accounts.has(dids[3]), false)
    // A proposer that puts one in anyway proposes an invalid block.
    for (const t of excluded) {
      const block = { header: { ...built.block.header, txRoot: txRoot([t.id]) }, txs: [t.bytes] }
      assert.throws(() => applyBlock(s1, block), { name: 'InvalidBlockError', message: /cannot be included: (NonceReusedError|NonceGapError|InsufficientFundsError)/ })
      assert.throws(() => checkBlock(s1, block), { name: 'InvalidBlockError' })
    }
  })

  it('a transaction that fails when executed pays its fee and uses its nonce, and changes nothing else', async () => {
    const s0 = genesis([[A, 1000n], [B, 5n], [dids[4], 1n]])
    const failing = [
      await tx(keys[0], 0, { kind: 'transfer', to: B, amount: 1000n }), // 1000 + fee 1 > 1000
      await tx(keys[0], 1, { kind: 'stake', amount: 999n }), // 999 + 1 > 999
      await tx(keys[0], 2, { kind: 'unstake', amount: 1n }), // no stake
      await tx(keys[1], 0, { kind: 'asset-transfer', asset: 'bafy-nothing', to: A }),
      await tx(keys[4], 0, { kind: 'transfer', to: A, amount: 1n }), // the fee takes all it has
      await tx(keys[4], 1, { kind: 'transfer', to: A, amount: 1n }) // and then it cannot pay another
    ]
    const built = buildBlock(s0, failing.map(t => t.bytes), C, 1000)
    assert.deepEqual(built.skipped.map(x => [x.tx, x.error]), [[failing[5].id, 'InsufficientFundsError']])
    const { state, receipts } = step(s0, failing.slice(0, 5), C)
    assert.deepEqual(errorsOf(receipts), ['InsufficientFundsError', 'InsufficientFundsError', 'InsufficientFundsError', 'NotFoundError', 'InsufficientFundsError'])
    for (const r of receipts) {
      assert.equal(r.ok, false)
      assert.equal(typeof r.message, 'string')
      assert.equal(r.created, undefined)
    }
    assert.deepEqual(state.accounts.get(A), { balance: 997n, nonce: 3, stake: 0n })
    assert.deepEqual(state.accounts.get(B), { balance: 4n, nonce: 1, stake: 0n })
    assert.deepEqual(state.accounts.get(dids[4]), { balance: 0n, nonce: 1, stake: 0n })
    assert.deepEqual(state.accounts.get(C), { balance: 5n, nonce: 0, stake: 0n }) // the five fees
    assert.equal(totalSupply(state), totalSupply(s0))
    assert.deepEqual(state.pending, [])
    assert.equal(state.assets.size, 0)
  })

  it('mints assets with the transaction id as asset id, transferable only by their owner', async () => {
    const s0 = genesis([[A, 100n], [B, 100n]])
    const mint = await tx(keys[0], 0, { kind: 'mint', content: CONTENT, name: 'hat' })
    const b1 = step(s0, [mint])
    assert.deepEqual(b1.receipts[0], { tx: mint.id, sender: A, height: 1, ok: true, created: mint.id })
    assert.deepEqual(b1.state.assets.get(mint.id), { id: mint.id, owner: A, minter: A, content: CONTENT.toString(), name: 'hat', height: 1 })
    const { state, receipts } = step(b1.state, [
      await tx(keys[1], 0, { kind: 'asset-transfer', asset: mint.id, to: B }), // B does not own it
      await tx(keys[0], 1, { kind: 'asset-transfer', asset: 'bafy-nothing', to: B }),
      await tx(keys[0], 2, { kind: 'asset-transfer', asset: mint.id, to: B }),
      await tx(keys[0], 3, { kind: 'asset-transfer', asset: mint.id, to: A }), // A no longer owns it
      await tx(keys[1], 1, { kind: 'asset-transfer', asset: mint.id, to: C })
    ])
    assert.deepEqual(errorsOf(receipts), ['NotOwnerError', 'NotFoundError', undefined, 'NotOwnerError', undefined])
    assert.deepEqual(state.assets.get(mint.id), { id: mint.id, owner: C, minter: A, content: CONTENT.toString(), name: 'hat', height: 1 })
    assert.equal(state.assets.size, 1)
    // Failed ones used their nonces too.
    assert.equal(state.accounts.get(A)?.nonce, 4)
    assert.equal(state.accounts.get(B)?.nonce, 2)
  })

  it('keeps parcels unique and non-overlapping within a space, but not across spaces', async () => {
    // A, the plaza's owner, grants B most of it; the garden is B's.
    const s0 = step(genesis([[A, 100n], [B, 100n]]), [await tx(keys[0], 0, { kind: 'land-grant', space: PLAZA.id, to: B, x: 0, y: 0, w: 200, h: 200, record: PLAZA.bytes })]).state
    const plaza = PLAZA.id
    const first = await tx(keys[0], 1, { kind: 'claim', space: plaza, x: 10, y: 10, w: 10, h: 10 })
    const claims = [
      first,
      await tx(keys[1], 0, { kind: 'claim', space: plaza, x: 19, y: 19, w: 5, h: 5 }), // one cell in common
      await tx(keys[1], 1, { kind: 'claim', space: plaza, x: 12, y: 12, w: 2, h: 2 }), // inside
      await tx(keys[1], 2, { kind: 'claim', space: plaza, x: 0, y: 0, w: 100, h: 100 }), // around
      await tx(keys[1], 3, { kind: 'claim', space: plaza, x: 20, y: 10, w: 5, h: 10 }), // touching edge: fine
      await tx(keys[1], 4, { kind: 'claim', space: plaza, x: 0, y: 10, w: 10, h: 10 }), // touching the other edge
      await tx(keys[1], 5, { kind: 'claim', space: GARDEN.id, x: 10, y: 10, w: 10, h: 10, record: GARDEN.bytes }), // same rectangle, other space
      await tx(keys[0], 2, { kind: 'claim', space: plaza, x: 9, y: 19, w: 2, h: 1 }) // overlaps both A's and B's
    ]
    const { state, receipts } = step(s0, claims)
    assert.deepEqual(errorsOf(receipts), [undefined, 'ParcelOverlapError', 'ParcelOverlapError', 'ParcelOverlapError', undefined, undefined, undefined, 'ParcelOverlapError'])
    assert.deepEqual(receipts.filter(r => r.ok).map(r => r.created), [claims[0].id, claims[4].id, claims[5].id, claims[6].id])
    assert.deepEqual(state.parcels.get(first.id), { id: first.id, owner: A, space: plaza, x: 10, y: 10, w: 10, h: 10 })
    assert.equal(state.parcels.size, 4)

    const { state: s2, receipts: r2 } = step(state, [
      await tx(keys[1], 6, { kind: 'parcel-transfer', parcel: first.id, to: B }),
      await tx(keys[0], 3, { kind: 'parcel-transfer', parcel: 'bafy-nothing', to: B }),
      await tx(keys[0], 4, { kind: 'parcel-transfer', parcel: first.id, to: B }),
      await tx(keys[1], 7, { kind: 'claim', space: plaza, x: 15, y: 15, w: 1, h: 1 }) // still taken, whoever owns it
    ])
    assert.deepEqual(errorsOf(r2), ['NotOwnerError', 'NotFoundError', undefined, 'ParcelOverlapError'])
    assert.equal(s2.parcels.get(first.id)?.owner, B)
  })

  it('moves stake and changes the validator set exactly VALIDATOR_UPDATE_DELAY heights later', async () => {
    assert.equal(VALIDATOR_UPDATE_DELAY, 2)
    const s0 = genesis([[A, 10_000n, 5_000n], [B, 10_000n]])
    const before: Validator[] = [{ id: A, power: 5 }]
    assert.deepEqual(s0.validators, before)
    const stakeTx = await tx(keys[1], 0, { kind: 'stake', amount: 7_500n })
    const b1 = step(s0, [stakeTx]) // height 1
    assert.deepEqual(b1.receipts.map(r => r.ok), [true])
    assert.deepEqual(b1.state.accounts.get(B), { balance: 10_000n - 7_500n - 1n, nonce: 1, stake: 7_500n })
    const after: Validator[] = [{ id: B, power: 7 }, { id: A, power: 5 }]
    const heights: Array<{ block: Block, state: LedgerState }> = [{ block: b1.block, state: b1.state }]
    for (let h = 2; h <= 4; h++) heights.push(step(heights[heights.length - 1].state, []))
    // The set in state signs the next height; headers name the set that signs them.
    assert.deepEqual(b1.state.validators, before) // signs 2
    assert.deepEqual(heights[1].state.validators, after) // signs 3 = 1 + VALIDATOR_UPDATE_DELAY
    assert.deepEqual(heights[2].state.validators, after)
    assert.equal(b1.block.header.validatorsHash, validatorsHash(before))
    assert.equal(heights[1].block.header.validatorsHash, validatorsHash(before))
    assert.equal(heights[2].block.header.validatorsHash, validatorsHash(after))

    // Unstake everything of A and part of B at height 5, stake C at height 6: two overlapping changes.
    const s4 = heights[3].state
    const b5 = step(s4, [await tx(keys[0], 0, { kind: 'unstake', amount: 5_000n }), await tx(keys[1], 1, { kind: 'unstake', amount: 3_000n })])
    assert.deepEqual(b5.receipts.map(r => r.ok), [true, true])
    assert.deepEqual(b5.state.accounts.get(A), { balance: 10_000n - 1n + 5_000n, nonce: 1, stake: 0n })
    const b6 = step(b5.state, [await tx(keys[0], 1, { kind: 'transfer', to: C, amount: 10_000n }), await tx(keys[2], 0, { kind: 'stake', amount: STAKE_PER_POWER * 9n })], A)
    assert.deepEqual(b6.receipts.map(r => r.ok), [true, true])
    const b7 = step(b6.state, [])
    const b8 = step(b7.state, [])
    assert.deepEqual(b5.state.validators, after)
    assert.deepEqual(b6.state.validators, [{ id: B, power: 4 }]) // from height 5's change
    assert.deepEqual(b7.state.validators, [{ id: C, power: 9 }, { id: B, power: 4 }]) // from height 6's change
    assert.deepEqual(b8.state.validators, b7.state.validators)
    assert.equal(b7.block.header.validatorsHash, validatorsHash([{ id: B, power: 4 }]))
    assert.equal(b8.block.header.validatorsHash, validatorsHash(b7.state.validators))
    // A failed stake changes nothing but the fee and nonce, not the validator set either.
    const b9 = step(b8.state, [await tx(keys[2], 1, { kind: 'stake', amount: 5_000n })])
    assert.equal(b9.receipts[0].error, 'InsufficientFundsError')
    assert.equal(b9.state.accounts.get(C)?.stake, b8.state.accounts.get(C)?.stake)
    assert.deepEqual(b9.state.pending, [])
    assert.equal(totalSupply(b9.state), totalSupply(s0))
  })

  describe('rejects blocks that cannot follow the state with InvalidBlockError', () => {
    const setup = async (): Promise<{ s0: LedgerState, s1: LedgerState, block: Block, t: Tx }> => {
      const s0 = genesis([[A, 1000n]])
      const t = await tx(keys[0], 0, { kind: 'transfer', to: B, amount: 1n })
      const { block, state } = step(s0, [t])
      return { s0, s1: state, block, t }
    }
    const withHeader = (block: Block, patch: Partial<Block['header']>): Block => ({ header: { ...block.header, ...patch }, txs: block.txs })

    it('wrong height, wrong prev, wrong chain, wrong txRoot', async () => {
      const { s0, s1, block } = await setup()
      for (const bad of [
        withHeader(block, { height: 2 }), withHeader(block, { height: 0 }),
        withHeader(block, { prev: blockHash(block.header) }), withHeader(block, { prev: 'ab'.repeat(32) }),
        withHeader(block, { chain: 'peerverse-main' }),
        withHeader(block, { txRoot: txRoot([]) }), { header: block.header, txs: [] }
      ]) {
        assert.throws(() => applyBlock(s0, bad), { name: 'InvalidBlockError' })
        assert.throws(() => checkBlock(s0, bad), { name: 'InvalidBlockError' })
      }
      // A block applied twice, or to the wrong state.
      assert.throws(() => applyBlock(s1, block), { name: 'InvalidBlockError' })
      const next = step(s1, []).block
      assert.throws(() => applyBlock(s0, next), { name: 'InvalidBlockError' })
    })

    it('a duplicate, malformed, foreign, mutated or oversized transaction', async () => {
      const { s0, block, t } = await setup()
      const dup = { header: { ...block.header, txRoot: txRoot([t.id, t.id]) }, txs: [t.bytes, t.bytes] }
      assert.throws(() => applyBlock(s0, dup), { name: 'InvalidBlockError', message: /twice/ })
      assert.throws(() => buildBlock(s0, [t.bytes, t.bytes], C, 1), { name: 'InvalidBlockError' })
      const foreign = (await signTx(keys[0], { chain: 'peerverse-main', nonce: 0, fee: 1n, kind: 'transfer', to: B, amount: 1n })).bytes
      const mutated = Uint8Array.from(t.bytes)
      mutated[mutated.length - 1] ^= 1
      const malformed = await rawTx({ ...base(), kind: 'transfer', to: B, amount: 0 })
      for (const bytes of [foreign, mutated, malformed, new Uint8Array([1, 2, 3]), new Uint8Array(MAX_TX_BYTES + 1)]) {
        assert.throws(() => applyBlock(s0, { header: block.header, txs: [t.bytes, bytes] }), { name: 'InvalidBlockError' })
        assert.throws(() => buildBlock(s0, [bytes], C, 1), (err: Error) => err.name !== 'TypeError')
      }
    })

    it('more than MAX_BLOCK_TXS transactions', async () => {
      const { s0, block } = await setup()
      const many = Array.from({ length: MAX_BLOCK_TXS + 1 }, () => block.txs[0])
      assert.throws(() => applyBlock(s0, { header: block.header, txs: many }), { name: 'InvalidBlockError' })
    })

    it('checkBlock: a wrong stateRoot or validatorsHash', async () => {
      const { s0, block } = await setup()
      assert.doesNotThrow(() => applyBlock(s0, withHeader(block, { stateRoot: 'ab'.repeat(32) })))
      assert.throws(() => checkBlock(s0, withHeader(block, { stateRoot: 'ab'.repeat(32) })), { name: 'InvalidBlockError' })
      assert.throws(() => checkBlock(s0, withHeader(block, { stateRoot: stateRoot(s0) })), { name: 'InvalidBlockError' })
      const staked = genesis([[A, 1000n, 2000n]])
      assert.throws(() => checkBlock(s0, withHeader(block, { validatorsHash: validatorsHash(staked.validators) })), { name: 'InvalidBlockError' })
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Model-based property test: an independent model of the rules in plain maps.

interface MAccount { balance: bigint, nonce: number, stake: bigint }
interface MAsset { id: string, owner: string, minter: string, content: string, name: string, height: number }
interface MParcel { id: string, owner: string, space: string, x: number, y: number, w: number, h: number }
interface Model {
  accounts: Map<string, MAccount>
  assets: Map<string, MAsset>
  parcels: Map<string, MParcel>
  /** Signs the next height. */
  validators: Validator[]
  /** Spaces the ledger knows (fixed for the run): owner and price per cell. */
  spaces: Map<string, { owner: string, price: bigint }>
  /** Height -> the set that signs it. */
  scheduled: Map<number, Validator[]>
}

function modelValidators (accounts: Map<string, MAccount>): Validator[] {
  const powered = [...accounts.entries()]
    .map(([id, a]) => ({ id, power: Number(a.stake / 1000n) }))
    .filter(v => v.power >= 1)
  powered.sort((x, y) => y.power - x.power || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
  return powered.slice(0, 100)
}

function cloneModel (m: Model): Model {
  return {
    accounts: new Map([...m.accounts].map(([k, v]) => [k, { ...v }])),
    assets: new Map([...m.assets].map(([k, v]) => [k, { ...v }])),
    parcels: new Map([...m.parcels].map(([k, v]) => [k, { ...v }])),
    validators: m.validators,
    spaces: m.spaces,
    scheduled: new Map(m.scheduled)
  }
}

function disjoint (a: MParcel, b: { x: number, y: number, w: number, h: number }): boolean {
  return a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y
}

/**
 * The model's verdict on one transaction. Not includable (nonce not the next one, fee unpayable):
 * left out, nothing changes. Includable: its effects, or, when its operation fails, only the fee
 * and the nonce. Mutates the model for an included one.
 */
function modelApply (m: Model, t: Tx, proposer: string, height: number): { included: boolean, ok: boolean, error?: string, created?: string } {
  const p = t.payload
  const get = (id: string): MAccount => m.accounts.get(id) ?? { balance: 0n, nonce: 0, stake: 0n }
  const credit = (id: string, delta: bigint): void => { const a = get(id); m.accounts.set(id, { ...a, balance: a.balance + delta }) }
  const sender = get(t.sender)
  if (p.nonce !== sender.nonce) return { included: false, ok: false, error: p.nonce < sender.nonce ? 'NonceReusedError' : 'NonceGapError' }
  if (sender.balance < p.fee) return { included: false, ok: false, error: 'InsufficientFundsError' }
  const fail = (error: string): { included: boolean, ok: boolean, error: string } => {
    m.accounts.set(t.sender, { ...sender, balance: sender.balance - p.fee, nonce: sender.nonce + 1 })
    credit(proposer, p.fee)
    return { included: true, ok: false, error }
  }
  const spend = p.kind === 'transfer' || p.kind === 'stake' ? p.amount : 0n
  if (sender.balance < p.fee + spend) return fail('InsufficientFundsError')
  if (p.kind === 'unstake' && sender.stake < p.amount) return fail('InsufficientFundsError')
  if (p.kind === 'asset-transfer') {
    const asset = m.assets.get(p.asset)
    if (asset == null) return fail('NotFoundError')
    if (asset.owner !== t.sender) return fail('NotOwnerError')
  }
  if (p.kind === 'parcel-transfer') {
    const parcel = m.parcels.get(p.parcel)
    if (parcel == null) return fail('NotFoundError')
    if (parcel.owner !== t.sender) return fail('NotOwnerError')
  }
  let price = 0n
  if (p.kind === 'claim') {
    const sp = m.spaces.get(p.space)
    if (sp == null) return fail('UnknownSpaceError')
    if (t.sender !== sp.owner) {
      if (sp.price === 0n) return fail('NotGrantedError')
      // A claim pays at most its maxPrice a cell, and none when it names none.
      if (sp.price > (p.maxPrice ?? 0n)) return fail('PriceAboveLimitError')
      price = sp.price * BigInt(p.w * p.h)
    }
    for (const other of m.parcels.values()) if (other.space === p.space && !disjoint(other, p)) return fail('ParcelOverlapError')
    if (sender.balance < p.fee + price) return fail('InsufficientFundsError')
  }
  // Success: every effect, one account at a time.
  const s = get(t.sender)
  m.accounts.set(t.sender, { balance: s.balance - p.fee, nonce: s.nonce + 1, stake: s.stake })
  let created: string | undefined
  switch (p.kind) {
    case 'transfer': credit(t.sender, -p.amount); credit(p.to, p.amount); break
    case 'stake': { const a = get(t.sender); m.accounts.set(t.sender, { ...a, balance: a.balance - p.amount, stake: a.stake + p.amount }); break }
    case 'unstake': { const a = get(t.sender); m.accounts.set(t.sender, { ...a, balance: a.balance + p.amount, stake: a.stake - p.amount }); break }
    case 'mint': m.assets.set(t.id, { id: t.id, owner: t.sender, minter: t.sender, content: p.content.toString(), name: p.name, height }); created = t.id; break
    case 'asset-transfer': m.assets.set(p.asset, { ...m.assets.get(p.asset)!, owner: p.to }); break
    case 'claim':
      m.parcels.set(t.id, { id: t.id, owner: t.sender, space: p.space, x: p.x, y: p.y, w: p.w, h: p.h }); created = t.id
      if (price > 0n) { credit(t.sender, -price); credit(m.spaces.get(p.space)!.owner, price) }
      break
    case 'parcel-transfer': m.parcels.set(p.parcel, { ...m.parcels.get(p.parcel)!, owner: p.to }); break
  }
  credit(proposer, p.fee)
  return created != null ? { included: true, ok: true, created } : { included: true, ok: true }
}

/** The model's end of block: due validator sets take over, stake changes are scheduled. */
function modelEndBlock (m: Model, height: number, stakeChanged: boolean): void {
  const due = m.scheduled.get(height + 1)
  if (due != null) m.validators = due
  for (const h of [...m.scheduled.keys()]) if (h <= height + 1) m.scheduled.delete(h)
  if (stakeChanged) m.scheduled.set(height + VALIDATOR_UPDATE_DELAY, modelValidators(m.accounts))
}

type Cmd = { sender: number, nonceDelta: number, fee: bigint, op:
  | { kind: 'transfer', to: number, amount: bigint }
  | { kind: 'mint', name: string }
  | { kind: 'asset-transfer', ref: number, to: number }
  | { kind: 'claim', space: string, x: number, y: number, w: number, h: number, maxPrice: bigint | null }
  | { kind: 'parcel-transfer', ref: number, to: number }
  | { kind: 'stake' | 'unstake', amount: bigint } }

const cmdArb: fc.Arbitrary<Cmd> = fc.record({
  sender: fc.nat({ max: 5 }),
  nonceDelta: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, -1, 1, 2),
  fee: fc.bigInt({ min: 1n, max: 20n }),
  op: fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('transfer' as const), to: fc.nat({ max: 6 }), amount: fc.oneof(fc.bigInt({ min: 1n, max: 400n }), fc.bigInt({ min: 1500n, max: 6000n })) }), weight: 4 },
    fc.record({ kind: fc.constant('mint' as const), name: fc.constantFrom('hat', 'sword', 'cat') }),
    { arbitrary: fc.record({ kind: fc.constant('asset-transfer' as const), ref: fc.nat({ max: 30 }), to: fc.nat({ max: 6 }) }), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant('claim' as const), space: fc.constantFrom(PLAZA.id, PLAZA.id, PLAZA.id, GARDEN.id, 'bafy-nowhere'), x: fc.nat({ max: 12 }), y: fc.nat({ max: 12 }), w: fc.integer({ min: 1, max: 5 }), h: fc.integer({ min: 1, max: 5 }), maxPrice: fc.constantFrom(null, 2n, 3n, 3n, 5n) }), weight: 3 },
    { arbitrary: fc.record({ kind: fc.constant('parcel-transfer' as const), ref: fc.nat({ max: 30 }), to: fc.nat({ max: 6 }) }), weight: 2 },
    fc.record({ kind: fc.constantFrom('stake' as const, 'unstake' as const), amount: fc.oneof(fc.bigInt({ min: 1n, max: 1500n }), fc.bigInt({ min: 1000n, max: 4000n })) })
  )
})
const blocksArb = fc.array(fc.record({ proposer: fc.nat({ max: 6 }), cmds: fc.array(cmdArb, { maxLength: 8 }) }), { minLength: 1, maxLength: 6 })

function pick<T> (list: T[], ref: number, missing: T): T {
  return ref % (list.length + 1) === list.length ? missing : list[ref % (list.length + 1)]
}

async function toTx (m: Model, c: Cmd): Promise<Tx> {
  const nonce = Math.max(0, (m.accounts.get(dids[c.sender])?.nonce ?? 0) + c.nonceDelta)
  const o = c.op
  let op: TxOp
  switch (o.kind) {
    case 'transfer': op = { kind: 'transfer', to: dids[o.to], amount: o.amount }; break
    case 'mint': op = { kind: 'mint', content: CONTENT, name: o.name }; break
    case 'asset-transfer': op = { kind: 'asset-transfer', asset: pick([...m.assets.keys()], o.ref, 'bafy-no-such-asset'), to: dids[o.to] }; break
    case 'claim': { const { maxPrice, ...rest } = o; op = { ...rest, ...(maxPrice != null ? { maxPrice } : {}) }; break }
    case 'parcel-transfer': op = { kind: 'parcel-transfer', parcel: pick([...m.parcels.keys()], o.ref, 'bafy-no-such-parcel'), to: dids[o.to] }; break
    default: op = { kind: o.kind, amount: o.amount }
  }
  return await tx(keys[c.sender], nonce, op, c.fee)
}

function snapshot (s: LedgerState): LedgerState {
  return structuredClone(s)
}

describe('state transition against a model (property)', () => {
  it('conserves supply, never goes negative, counts nonces and agrees with the model after every block', async () => {
    // dids[5] starts with less than most fees: its transactions are often left out.
    const initial: Array<[string, bigint, bigint?]> = [[dids[0], 2000n, 3000n], [dids[1], 2000n, 1000n], [dids[2], 2000n], [dids[3], 2000n], [dids[4], 2000n], [dids[5], 5n]]
    const seen = new Map<string, number>() // receipt outcomes across all runs, to show the run covers them
    // The plaza is dids[0]'s, at 3 a cell; the garden dids[1]'s, not for sale (both proven by their records first).
    const setup = step(genesis(initial), [
      await tx(keys[0], 0, { kind: 'land-price', space: PLAZA.id, price: 3n, record: PLAZA.bytes }),
      await tx(keys[1], 0, { kind: 'claim', space: GARDEN.id, x: 200, y: 200, w: 4, h: 4, record: GARDEN.bytes })
    ], dids[6])
    assert.deepEqual(errorsOf(setup.receipts), [undefined, undefined])
    await fc.assert(fc.asyncProperty(blocksArb, async blocks => {
      let state = setup.state
      const supply = totalSupply(state)
      let model: Model = {
        accounts: new Map([...state.accounts].map(([id, a]) => [id, { ...a }])),
        assets: new Map(),
        parcels: new Map([...state.parcels].map(([id, p]) => [id, { ...p }])),
        validators: [],
        spaces: new Map([[PLAZA.id, { owner: dids[0], price: 3n }], [GARDEN.id, { owner: dids[1], price: 0n }]]),
        scheduled: new Map()
      }
      model.validators = modelValidators(model.accounts)
      assert.deepEqual(state.validators, model.validators)
      const inBlocksAsSender = new Map<string, number>([[dids[0], 1], [dids[1], 1]])
      for (const { proposer: pi, cmds } of blocks) {
        const proposer = dids[pi]
        const height = state.height + 1
        const working = cloneModel(model)
        const txs: Tx[] = []
        const expected: Array<{ included: boolean, ok: boolean, error?: string, created?: string }> = []
        let stakeChanged = false
        for (const c of cmds) {
          const t = await toTx(working, c)
          if (txs.some(x => x.id === t.id)) continue // the same bytes twice would make the block invalid
          txs.push(t)
          const verdict = modelApply(working, t, proposer, height)
          expected.push(verdict)
          if (verdict.ok && (t.payload.kind === 'stake' || t.payload.kind === 'unstake')) stakeChanged = true
        }
        modelEndBlock(working, height, stakeChanged)
        const signingSet = state.validators

        const before = snapshot(state)
        const rootBefore = stateRoot(state)
        const built = buildBlock(state, txs.map(t => t.bytes), proposer, height * 1000)
        // Another node checks it; applying it again gives the same result, and leaves the input alone.
        const again = applyBlock(state, built.block)
        const checked = checkBlock(state, built.block)
        assert.equal(stateRoot(again.state), built.block.header.stateRoot)
        assert.equal(stateRoot(checked.state), built.block.header.stateRoot)
        assert.deepEqual(again.receipts, built.receipts)
        assert.equal(stateRoot(state), rootBefore)
        assert.deepEqual(state, before)
        assert.equal(built.block.header.validatorsHash, validatorsHash(signingSet))

        // What the model leaves out, the builder leaves out, for the same reasons.
        const included = txs.filter((_, i) => expected[i].included)
        const left = txs.map((t, i) => [t.id, expected[i]] as const).filter(([, v]) => !v.included)
        assert.deepEqual(built.block.txs, included.map(t => t.bytes))
        assert.deepEqual(built.skipped.map(x => [x.tx, x.error]), left.map(([id, v]) => [id, v.error]))
        for (const [, v] of left) seen.set(`left out: ${v.error!}`, (seen.get(`left out: ${v.error!}`) ?? 0) + 1)
        const verdicts = expected.filter(v => v.included)
        const receipts = built.receipts
        assert.equal(receipts.length, included.length)
        receipts.forEach((r, i) => {
          assert.equal(r.tx, included[i].id)
          assert.equal(r.sender, included[i].sender)
          assert.equal(r.height, height)
          assert.deepEqual({ ok: r.ok, error: r.error, created: r.created }, { ok: verdicts[i].ok, error: verdicts[i].error, created: verdicts[i].created }, `tx ${i} (${included[i].payload.kind})`)
          const key = r.ok ? `ok ${included[i].payload.kind}` : r.error!
          seen.set(key, (seen.get(key) ?? 0) + 1)
          // Every included transaction uses its sender's nonce, failed or not.
          inBlocksAsSender.set(r.sender, (inBlocksAsSender.get(r.sender) ?? 0) + 1)
        })
        state = built.state
        model = working

        assert.equal(state.height, height)
        assert.equal(totalSupply(state), supply)
        for (const [id, a] of state.accounts) {
          assert.ok(a.balance >= 0n && a.stake >= 0n, `${id} went negative`)
          assert.equal(a.nonce, inBlocksAsSender.get(id) ?? 0)
        }
        assert.deepEqual(new Map([...state.accounts]), model.accounts)
        assert.deepEqual(new Map([...state.assets]), model.assets)
        assert.deepEqual(new Map([...state.parcels]), model.parcels)
        assert.deepEqual(state.validators, model.validators)
      }
    }), { seed: 42, numRuns: 150 })
    // The run exercised every outcome, not only the happy path.
    for (const name of ['left out: NonceReusedError', 'left out: NonceGapError', 'left out: InsufficientFundsError', 'InsufficientFundsError', 'NotOwnerError', 'NotFoundError', 'ParcelOverlapError', 'NotGrantedError', 'UnknownSpaceError',
      'ok transfer', 'ok mint', 'ok asset-transfer', 'ok claim', 'ok parcel-transfer', 'ok stake', 'ok unstake']) {
      assert.ok((seen.get(name) ?? 0) > 0, `no ${name} in the run: ${JSON.stringify([...seen])}`)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Merkle commitment and light-client proofs.

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const keyArb = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '/', 'é', 'Z'), maxLength: 4 })
const leavesArb = fc.uniqueArray(fc.record({ key: keyArb, value: fc.uint8Array({ maxLength: 8 }) }), { selector: l => l.key, maxLength: 40 })

/** What the key's value really is (hex), or null. */
function truth (leaves: Leaf[], key: string): string | null {
  const l = leaves.find(x => x.key === key)
  return l == null ? null : hexOf(l.value)
}

/** verifyStateProof's outcome: the value (hex), null for absence, or the name of the error. */
function outcome (root: string, key: string, proof: StateProof): string | null {
  try {
    const v = verifyStateProof(root, key, proof)
    return v == null ? null : hexOf(v)
  } catch (err) {
    return `!${(err as Error).name}`
  }
}

const flipHex = (h: string, at = 0): string => h.slice(0, at) + (h[at] === '0' ? '1' : '0') + h.slice(at + 1)

/** Every way we know to bend one inclusion proof. */
function bent (p: InclusionProof): InclusionProof[] {
  const out: InclusionProof[] = []
  out.push({ ...p, value: p.value + '00' }, { ...p, value: p.value === '' ? 'ff' : '' })
  if (p.value.length > 0) out.push({ ...p, value: flipHex(p.value, p.value.length - 1) })
  for (let k = 0; k < p.path.length; k++) {
    const path = (f: (s: InclusionProof['path']) => void): InclusionProof => { const c = p.path.map(s => ({ ...s })); f(c); return { ...p, path: c } }
    out.push(path(c => { c[k].sibling = flipHex(c[k].sibling, 63) }))
    out.push(path(c => { c[k].sibling = flipHex(c[k].sibling, 0) }))
    out.push(path(c => { c[k].left = !c[k].left }))
    out.push(path(c => { c.splice(k, 1) }))
    out.push(path(c => { c.splice(k, 0, { ...c[k] }) }))
    if (k + 1 < p.path.length) out.push(path(c => { [c[k], c[k + 1]] = [c[k + 1], c[k]] }))
  }
  out.push({ ...p, path: [...p.path, { sibling: 'ab'.repeat(32), left: false }] }, { ...p, path: [...p.path, { sibling: 'ab'.repeat(32), left: true }] })
  out.push({ ...p, path: [{ sibling: 'cd'.repeat(32), left: true }, ...p.path] })
  for (const index of [p.index - 1, p.index + 1, p.index + 2, p.total, p.total - 1, 0]) if (index !== p.index) out.push({ ...p, index })
  for (const total of [p.total - 1, p.total + 1, p.total + 2, p.total * 2, p.index + 1, 1]) if (total !== p.total) out.push({ ...p, total })
  out.push({ ...p, index: p.index + 1, total: p.total + 1 }, { ...p, index: Math.floor(p.index / 2), total: Math.ceil(p.total / 2) })
  return out
}

/** Everything a lying server could send for `key`, built from the honest tree. */
function lies (tree: MerkleTree, sorted: Leaf[], key: string): StateProof[] {
  const honest = tree.prove(key)
  const root = tree.root
  const incl = (i: number): InclusionProof | undefined => i >= 0 && i < sorted.length ? tree.prove(sorted[i].key).present : undefined
  const out: StateProof[] = []
  const proof = (p: Omit<StateProof, 'root' | 'key'>): void => { out.push({ root, key, ...p }) }
  // A proof for another key, as it is and relabelled.
  for (let j = 0; j < sorted.length; j++) {
    if (sorted[j].key === key) continue
    const other = incl(j)!
    proof({ present: other })
    proof({ present: { ...other, key } })
    out.push(tree.prove(sorted[j].key))
  }
  // A present proof with a made-up leaf.
  proof({ present: { key, value: 'ff', index: 0, total: Math.max(1, sorted.length), path: incl(0)?.path ?? [] } })
  if (honest.present != null) {
    const i = honest.present.index
    for (const b of bent(honest.present)) proof({ present: b })
    // Absence of a present key: skip over it, or pretend it is an edge.
    const prev = incl(i - 1)
    const next = incl(i + 1)
    proof({ before: prev, after: next })
    proof({ before: prev })
    proof({ after: next })
    proof({})
    if (prev != null && next != null) {
      proof({ before: prev, after: { ...next, index: prev.index + 1 } })
      proof({ before: { ...prev, index: next.index - 1 }, after: next })
    }
    if (prev != null) {
      proof({ before: { ...prev, index: prev.total - 1 } })
      proof({ before: { ...prev, total: prev.index + 1 } })
    }
    if (next != null) proof({ after: { ...next, index: 0 } })
    proof({ before: incl(i - 2), after: prev })
    proof({ before: next, after: incl(i + 2) })
    proof({ before: honest.present, after: next })
  } else {
    const { before, after } = honest
    // Claim a value for an absent key.
    if (before != null) proof({ present: { ...before, key } })
    if (after != null) proof({ present: { ...after, key } })
    if (before != null) for (const b of bent(before)) proof({ before: b, after })
    if (after != null) for (const a of bent(after)) proof({ before, after: a })
    // Neighbours that are not adjacent, or not there.
    const lo = before != null ? before.index : -1
    proof({ before: incl(lo - 1), after })
    proof({ before, after: incl(lo + 2) })
    proof({ before: incl(lo - 1), after: incl(lo + 2) })
    proof({ before })
    proof({ after })
    proof({ before: after, after: before })
  }
  return out
}

describe('Merkle state commitment', () => {
  it('has a root that does not depend on insertion order, and changes with any value (property)', () => {
    const arb = leavesArb.chain(ls => fc.tuple(fc.constant(ls), fc.shuffledSubarray(ls, { minLength: ls.length, maxLength: ls.length }), fc.nat()))
    fc.assert(fc.property(arb, ([leaves, shuffled, seed]) => {
      const root = new MerkleTree(leaves).root
      assert.equal(new MerkleTree(shuffled).root, root)
      assert.equal(new MerkleTree([...leaves].reverse()).root, root)
      assert.equal(new MerkleTree(leaves).size, leaves.length)
      if (leaves.length > 0) {
        const i = seed % leaves.length
        const changed = leaves.map((l, j) => j === i ? { key: l.key, value: Uint8Array.of(...l.value, 0) } : l)
        assert.notEqual(new MerkleTree(changed).root, root)
        assert.notEqual(new MerkleTree(leaves.filter((_, j) => j !== i)).root, root)
        assert.throws(() => new MerkleTree([...leaves, { key: leaves[i].key, value: new Uint8Array(0) }]))
      }
    }), { seed: 42, numRuns: 300 })
  })

  it('proves present and absent keys, including before the first, after the last and in the empty tree', () => {
    const empty = new MerkleTree([])
    assert.equal(empty.root, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    const p0 = empty.prove('account/x')
    assert.equal(p0.before, undefined)
    assert.equal(p0.after, undefined)
    assert.equal(verifyStateProof(empty.root, 'account/x', p0), null)

    const leaves = ['b', 'd', 'f', 'h', 'j'].map(key => ({ key, value: new TextEncoder().encode(key.toUpperCase()) }))
    const tree = new MerkleTree(leaves)
    for (const l of leaves) assert.deepEqual(verifyStateProof(tree.root, l.key, tree.prove(l.key)), new Uint8Array(l.value))
    for (const key of ['a', '', 'c', 'e', 'i', 'k', 'zzz']) {
      const p = tree.prove(key)
      assert.equal(p.present, undefined)
      assert.equal(verifyStateProof(tree.root, key, p), null, key)
    }
    assert.equal(tree.prove('a').before, undefined)
    assert.equal(tree.prove('a').after?.index, 0)
    assert.equal(tree.prove('k').after, undefined)
    assert.equal(tree.prove('k').before?.index, 4)
    // Proofs are for one key and one root.
    assert.throws(() => verifyStateProof(tree.root, 'd', tree.prove('b')), { name: 'InvalidProofError' })
    assert.throws(() => verifyStateProof(empty.root, 'b', tree.prove('b')), { name: 'InvalidProofError' })
    assert.throws(() => verifyStateProof(tree.root, 'x', p0), { name: 'InvalidProofError' })
    // Proofs are canonical: a path step too many is refused even though it would not change the value.
    const d = tree.prove('d').present!
    assert.throws(() => verifyStateProof(tree.root, 'd', { root: tree.root, key: 'd', present: { ...d, path: [...d.path, d.path[0]] } }), { name: 'InvalidProofError' })
    // One leaf: no path at all.
    const one = new MerkleTree([{ key: 'm', value: Uint8Array.of(1) }])
    assert.deepEqual(one.prove('m').present?.path, [])
    assert.deepEqual(verifyStateProof(one.root, 'm', one.prove('m')), Uint8Array.of(1))
    assert.equal(verifyStateProof(one.root, 'a', one.prove('a')), null)
    assert.equal(verifyStateProof(one.root, 'z', one.prove('z')), null)
  })

  it('round-trips honest proofs for any tree and key (property)', () => {
    fc.assert(fc.property(leavesArb, keyArb, (leaves, key) => {
      const tree = new MerkleTree(leaves)
      const keys = [key, ...leaves.map(l => l.key), ...leaves.map(l => l.key + 'a'), '']
      for (const k of keys) {
        const p = tree.prove(k)
        assert.equal(p.root, tree.root)
        assert.equal(outcome(tree.root, k, p), truth(leaves, k))
        // Proofs survive a trip through JSON (how a light client receives them).
        assert.equal(outcome(tree.root, k, JSON.parse(JSON.stringify(p))), truth(leaves, k))
      }
    }), { seed: 42, numRuns: 200 })
  })

  it('never lets a lying server prove anything but the truth (property)', () => {
    let rejected = 0
    let total = 0
    fc.assert(fc.property(leavesArb, keyArb, fc.option(fc.nat()), (leaves, random, chosen) => {
      const tree = new MerkleTree(leaves)
      const sorted = [...leaves].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      const key = chosen != null && leaves.length > 0 ? leaves[chosen % leaves.length].key : random
      const real = truth(leaves, key)
      for (const lie of lies(tree, sorted, key)) {
        const got = outcome(tree.root, key, lie)
        total++
        if (got === '!InvalidProofError') { rejected++; continue }
        assert.equal(got, real, `liar got ${JSON.stringify(got)} for ${JSON.stringify(key)} (truth ${JSON.stringify(real)}) with ${JSON.stringify(lie)}`)
      }
      // A root from another tree accepts none of the honest proofs unless the trees agree on the key.
      const other = new MerkleTree([...leaves, { key: `${key}/x`, value: Uint8Array.of(9) }])
      const got = outcome(other.root, key, tree.prove(key))
      assert.ok(got === '!InvalidProofError', `stale proof accepted: ${String(got)}`)
    }), { seed: 42, numRuns: 300 })
    assert.ok(rejected > total * 0.9, `${rejected} of ${total} lies rejected`)
  })

  it('rejects malformed proof shapes from a peer with InvalidProofError', () => {
    const tree = new MerkleTree(['a', 'b', 'c'].map(key => ({ key, value: Uint8Array.of(1) })))
    const good = tree.prove('b')
    const present = good.present!
    const shapes: unknown[] = [
      { ...good, present: { ...present, path: undefined } },
      { ...good, present: { ...present, path: null } },
      { ...good, present: { ...present, path: 'nope' } },
      { ...good, present: { ...present, path: [null, null] } },
      { ...good, present: { ...present, value: 42 } },
      { ...good, present: { ...present, index: '1' } },
      { ...good, present: { ...present, key: 42 } },
      { ...good, present: 'yes' },
      { root: good.root, key: 'bb', before: { ...present, path: null } }
    ]
    for (const shape of shapes) {
      assert.throws(() => verifyStateProof(tree.root, (shape as StateProof).key, shape as StateProof), { name: 'InvalidProofError' }, JSON.stringify(shape))
    }
  })
})

/** The state's tree from scratch, encoding every value here (independent of state.ts's caches). */
function scratchTree (s: LedgerState): MerkleTree {
  const out: Leaf[] = []
  for (const [id, a] of s.accounts) out.push({ key: `account/${id}`, value: dagCbor.encode([a.balance, a.nonce, a.stake]) })
  for (const [id, a] of s.assets) out.push({ key: `asset/${id}`, value: dagCbor.encode([a.owner, a.minter, a.content, a.name, a.height]) })
  for (const [id, p] of s.parcels) out.push({ key: `parcel/${id}`, value: dagCbor.encode([p.owner, p.space, p.x, p.y, p.w, p.h]) })
  return new MerkleTree(out)
}

/** A state of `n` made-up accounts (the state root does not care whether ids are real dids). */
function bigState (n: number): LedgerState {
  return genesis(Array.from({ length: n }, (_, i): [string, bigint] => [`did:key:test${String(i * 7919 % n).padStart(6, '0')}`, BigInt(i + 1)]))
}

/** A child state with `ids` changed (new objects, as the rules make), maps copied as `begin` does. */
function changed (s: LedgerState, ids: string[], by = 1n): LedgerState {
  const accounts = new Map(s.accounts)
  for (const id of ids) {
    const a = accounts.get(id)!
    accounts.set(id, { ...a, balance: a.balance + by, nonce: a.nonce + 1 })
  }
  return { ...s, height: s.height + 1, accounts, assets: new Map(s.assets), parcels: new Map(s.parcels) }
}

describe('incremental state root', () => {
  /** The leaves of a map in its iteration order, hashed in one of the ways a caller may pass them. */
  type HashMode = 'cached' | 'none' | 'plain'
  const sorted = (m: Map<string, Leaf>): string[] => [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))

  it('gives the root and proofs of a tree built from scratch, after any sequence of changes (seeded property)', () => {
    const rnd = seeded(20240611)
    const int = rnd.int
    const bytes = (): Uint8Array => rnd.bytes(int(9))
    let trees = 0
    let reused = 0
    for (const size of [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 1023, 1024, 1025]) {
      for (const mode of ['cached', 'none', 'plain'] as HashMode[]) {
        // Short keys from a small alphabet below 64 leaves, so absent keys fall between, before and after them.
        const newKey = (m: Map<string, Leaf>): string => {
          for (;;) {
            const k = size < 64 ? Array.from({ length: 1 + int(4) }, () => 'abcz/'[int(5)]).join('') : `k${int(1e9)}`
            if (!m.has(k)) return k
          }
        }
        const make = (key: string, value: Uint8Array): Leaf => {
          if (mode === 'none') return { key, value }
          const hash = leafHash(key, value)
          return { key, value, hash: mode === 'plain' ? new Uint8Array(hash) : hash }
        }
        const map = new Map<string, Leaf>()
        while (map.size < size) { const k = newKey(map); map.set(k, make(k, bytes())) }
        let tree = new MerkleTree(map.values())
        const rounds = size > 500 ? 12 : 40
        for (let round = 0; round < rounds; round++) {
          const keys = [...map.keys()]
          const touched: string[] = []
          const op = int(9)
          if (op === 0) {
            // No change at all.
          } else if (op === 1 && keys.length > 0) {
            // One leaf.
            const k = keys[int(keys.length)]
            map.set(k, make(k, bytes()))
            touched.push(k)
          } else if (op === 2 && keys.length > 0) {
            // Many leaves, some twice, some to the same value in a new object.
            for (let c = 1 + int(Math.max(1, keys.length >> 1)); c > 0; c--) {
              const k = keys[int(keys.length)]
              map.set(k, int(4) === 0 ? make(k, Uint8Array.from(map.get(k)!.value)) : make(k, bytes()))
              touched.push(k)
            }
          } else if (op === 3) {
            // Keys added (at the end of the iteration order).
            for (let c = 1 + int(3); c > 0; c--) { const k = newKey(map); map.set(k, make(k, bytes())); touched.push(k) }
          } else if (op === 4 && keys.length > 0) {
            // Keys removed.
            for (let c = 1 + int(3); c > 0 && map.size > 0; c--) map.delete(keys[int(keys.length)])
          } else if (op === 5 && keys.length > 0) {
            // A key removed and put back: the same key set in another order.
            const k = keys[int(keys.length)]
            const l = map.get(k)!
            map.delete(k)
            map.set(k, l)
            touched.push(k)
          } else if (op === 6 && keys.length > 0) {
            // Changed, rooted, then changed back.
            const k = keys[int(keys.length)]
            const was = map.get(k)!
            map.set(k, make(k, Uint8Array.of(...was.value, 1)))
            const between = new MerkleTree(map.values(), tree)
            assert.equal(between.root, new MerkleTree(map.values()).root)
            assert.notEqual(between.root, tree.root)
            map.set(k, int(2) === 0 ? was : make(k, Uint8Array.from(was.value)))
            const back = new MerkleTree(map.values(), between)
            assert.equal(back.root, tree.root)
            touched.push(k)
          } else if (op === 7 && keys.length > 0) {
            // One key removed and another added: the same size, another key set.
            map.delete(keys[int(keys.length)])
            const k = newKey(map)
            map.set(k, make(k, bytes()))
            touched.push(k)
          } else if (op === 8) {
            // A whole new map in the same order with every value re-created (equal bytes, new objects).
            for (const k of keys) map.set(k, make(k, Uint8Array.from(map.get(k)!.value)))
          }
          const previousRoot = tree.root
          const previousProof = size > 0 ? tree.prove(keys[0]) : undefined
          const leaves = [...map.values()]
          if (tree.hasKeysOf(leaves)) reused++
          const next = new MerkleTree(leaves, tree)
          const scratch = new MerkleTree(leaves)
          trees++
          const at = `size ${size}, ${mode} hashes, round ${round}, op ${op}`
          assert.equal(next.root, scratch.root, at)
          assert.equal(next.size, map.size, at)
          // The previous tree is untouched (it may still be serving proofs).
          assert.equal(tree.root, previousRoot, at)
          if (previousProof != null) assert.deepEqual(tree.prove(keys[0]), previousProof, at)
          // Proofs: every key in small trees; in large ones the touched keys, the edges and a sample.
          const all = sorted(map)
          const present = map.size <= 64 ? all : [...touched.filter(k => map.has(k)), all[0], all[all.length - 1], ...Array.from({ length: 16 }, () => all[int(all.length)])]
          const absent = ['', '~', ...present.map(k => `${k}a`), ...keys.filter(k => !map.has(k))]
          for (const k of present) {
            const p = next.prove(k)
            assert.deepEqual(p, scratch.prove(k), `${at}: ${k}`)
            assert.deepEqual(verifyStateProof(next.root, k, JSON.parse(JSON.stringify(p))), new Uint8Array(map.get(k)!.value), `${at}: ${k}`)
          }
          for (const k of absent) {
            if (map.has(k)) continue
            const p = next.prove(k)
            assert.deepEqual(p, scratch.prove(k), `${at}: ${k}`)
            assert.equal(verifyStateProof(next.root, k, p), null, `${at}: ${k}`)
          }
          tree = next
        }
      }
    }
    // The run took the reusing path most of the time, not only the full build.
    assert.ok(reused > trees / 2, `${reused} of ${trees} trees reused the previous one`)
  })

  it('hashes only the nodes above the leaves that changed', () => {
    for (const n of [4096, 1025]) {
      const depth = Math.ceil(Math.log2(n))
      const leaves = Array.from({ length: n }, (_, i) => { const key = `k${i}`; const value = Uint8Array.of(i & 255, i >> 8); return { key, value, hash: leafHash(key, value) } })
      const count = (f: () => MerkleTree): { tree: MerkleTree, leaf: number, node: number } => {
        const before = { ...hashCounts }
        const tree = f()
        return { tree, leaf: hashCounts.leaf - before.leaf, node: hashCounts.node - before.node }
      }
      const full = count(() => new MerkleTree(leaves))
      assert.equal(full.node, n - 1)
      // Nothing changed: nothing hashed.
      const same = count(() => new MerkleTree(leaves.map(l => ({ ...l })), full.tree))
      assert.deepEqual([same.leaf, same.node], [0, 0])
      assert.equal(same.tree.root, full.tree.root)
      for (const k of [1, 2, 10, 100]) {
        const edit = leaves.slice()
        for (let c = 0; c < k; c++) {
          const i = (c * 7919 + 13) % n
          const value = Uint8Array.of(1, 2, 3, c)
          edit[i] = { key: edit[i].key, value, hash: leafHash(edit[i].key, value) }
        }
        const up = count(() => new MerkleTree(edit, full.tree))
        assert.equal(up.tree.root, new MerkleTree(edit).root)
        assert.equal(up.leaf, 0)
        assert.ok(up.node <= k * depth, `n ${n}, k ${k}: ${up.node} node hashes`)
        if (k === 1) assert.ok(up.node >= depth - 1)
      }
      // A key added: built again from scratch.
      const grown = count(() => new MerkleTree([...leaves, { key: 'new', value: Uint8Array.of(1) }], full.tree))
      assert.equal(grown.node, n)
    }
  })

  it('roots a block\'s state from its parent\'s tree, hashing only what the block changed', () => {
    const n = 2000
    const s0 = bigState(n)
    const ids = [...s0.accounts.keys()]
    assert.equal(stateRoot(s0), scratchTree(s0).root)
    /** What `f` hashed: leaves and inner nodes. */
    const counted = <T>(f: () => T): { out: T, leaf: number, node: number } => {
      const before = { ...hashCounts }
      const out = f()
      return { out, leaf: hashCounts.leaf - before.leaf, node: hashCounts.node - before.node }
    }
    const s1 = changed(s0, [ids[3], ids[500], ids[1999], ids[3]])
    const r1 = counted(() => stateRoot(s1))
    assert.equal(r1.out, scratchTree(s1).root)
    assert.equal(r1.leaf, 3) // the three changed accounts, encoded once each
    assert.ok(r1.node <= 3 * Math.ceil(Math.log2(n)), `${r1.node} node hashes`)
    // Rooting or proving the same state again hashes nothing.
    const key = `account/${ids[500]}`
    const again = counted(() => [stateRoot(s1), proveKey(s1, key)] as const)
    assert.deepEqual([again.leaf, again.node], [0, 0])
    const [root, p] = again.out
    assert.equal(root, r1.out)
    assert.deepEqual(p, scratchTree(s1).prove(key))
    assert.deepEqual(decodeAccountValue(verifyStateProof(root, key, p)!), s1.accounts.get(ids[500]))
  })

  it('agrees with a tree from scratch for siblings, new keys and states changed after they were rooted', async () => {
    const s0 = bigState(300)
    const ids = [...s0.accounts.keys()]
    const roots = (s: LedgerState, at: string): void => {
      const scratch = scratchTree(s)
      assert.equal(stateRoot(s), scratch.root, at)
      for (const key of [`account/${ids[0]}`, `account/${ids[299]}`, `asset/x`, 'account/', 'zzz']) assert.deepEqual(proveKey(s, key), scratch.prove(key), `${at}: ${key}`)
    }
    roots(s0, 's0')
    // Several candidate blocks on one parent, rooted in turns (as a validator checks proposals).
    const a = changed(s0, ids.slice(0, 50))
    const b = changed(s0, ids.slice(25, 80), 5n)
    const c = changed(a, ids.slice(40, 60))
    roots(a, 'a'); roots(b, 'b'); roots(c, 'c'); roots(s0, 's0 again'); roots(a, 'a again'); roots(b, 'b again')
    // A key added, and a sibling without it.
    const d = changed(s0, [ids[7]])
    d.accounts.set('did:key:new', { balance: 1n, nonce: 0, stake: 0n })
    const e = changed(s0, [ids[8]])
    roots(d, 'd'); roots(e, 'e'); roots(d, 'd again')
    // Real blocks, with an asset minted (a new key of another kind).
    const g = genesis([[A, 1_000_000n], [B, 10n]])
    roots(g, 'genesis')
    const b1 = step(g, [await tx(keys[0], 0, { kind: 'mint', content: CONTENT, name: 'hat' }), await tx(keys[0], 1, { kind: 'transfer', to: B, amount: 5n })])
    roots(b1.state, 'b1')
    const b2 = step(b1.state, [await tx(keys[0], 2, { kind: 'transfer', to: B, amount: 5n })])
    roots(b2.state, 'b2')
    // A rooted state changed afterwards (the rules never do, but a caller might): its root follows.
    const m = changed(s0, [ids[1]])
    roots(m, 'm')
    m.accounts.set(ids[2], { balance: 99n, nonce: 9, stake: 0n })
    roots(m, 'm with a new value')
    m.accounts.get(ids[3])!.balance += 1n
    roots(m, 'm with a value changed in place')
    m.accounts.delete(ids[4])
    roots(m, 'm with a key removed')
    m.accounts.set(ids[4], { balance: 5n, nonce: 0, stake: 0n })
    roots(m, 'm with the key back, at the end')
    m.accounts.get(ids[4])!.balance = 5n
    m.assets.set('x', { id: 'x', owner: A, minter: A, content: 'c', name: 'n', height: 1 })
    roots(m, 'm with an asset')
  })
})

describe('light client against block headers', () => {
  it('verifies balances and ownership from a header\'s stateRoot, and catches a lying server', async () => {
    const s0 = genesis([[A, 1_000_000n, 2_000n], [B, 50n]])
    const mint = await tx(keys[0], 0, { kind: 'mint', content: CONTENT, name: 'hat' })
    const claim = await tx(keys[0], 1, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 4, h: 4, record: PLAZA.bytes })
    const b1 = step(s0, [mint, claim, await tx(keys[0], 2, { kind: 'transfer', to: B, amount: 1234n })])
    const b2 = step(b1.state, [await tx(keys[0], 3, { kind: 'asset-transfer', asset: mint.id, to: B }), await tx(keys[1], 0, { kind: 'transfer', to: dids[4], amount: 7n }, 2n)])
    const header1 = b1.block.header
    const header2 = b2.block.header
    // The client holds only headers. The server holds states.
    const served = (state: LedgerState, key: string): StateProof => JSON.parse(JSON.stringify(proveKey(state, key)))

    const account = (header: typeof header1, state: LedgerState, did: string): ReturnType<typeof decodeAccountValue> | null => {
      const v = verifyStateProof(header.stateRoot, `account/${did}`, served(state, `account/${did}`))
      return v == null ? null : decodeAccountValue(v)
    }
    assert.deepEqual(account(header1, b1.state, B), { balance: 1284n, nonce: 0, stake: 0n })
    assert.deepEqual(account(header2, b2.state, B), { balance: 1284n - 7n - 2n, nonce: 1, stake: 0n })
    assert.deepEqual(account(header2, b2.state, A), b2.state.accounts.get(A))
    assert.equal(account(header2, b2.state, A)?.stake, 2_000n)
    assert.equal(account(header2, b2.state, dids[5]), null) // no such account, proven
    const owner = (header: typeof header1, state: LedgerState, key: string): string | null => {
      const v = verifyStateProof(header.stateRoot, key, served(state, key))
      return v == null ? null : decodeOwner(v)
    }
    assert.equal(owner(header1, b1.state, `asset/${mint.id}`), A)
    assert.equal(owner(header2, b2.state, `asset/${mint.id}`), B)
    assert.equal(owner(header2, b2.state, `parcel/${claim.id}`), A)
    assert.equal(owner(header2, b2.state, `asset/${claim.id}`), null)
    // The space's owner, extent and price are proven too.
    const sp = verifyStateProof(header2.stateRoot, `space/${PLAZA.id}`, served(b2.state, `space/${PLAZA.id}`))
    assert.deepEqual(sp == null ? null : decodeSpaceValue(sp), { owner: A, width: 256, depth: 256, price: 0n })
    assert.equal(verifyStateProof(header2.stateRoot, `space/${GARDEN.id}`, served(b2.state, `space/${GARDEN.id}`)), null)

    // Lies: a stale state, another account's leaf relabelled, a doctored value, a skipped leaf.
    const stale = served(b1.state, `asset/${mint.id}`)
    assert.throws(() => verifyStateProof(header2.stateRoot, `asset/${mint.id}`, stale), { name: 'InvalidProofError' })
    const rich = served(b2.state, `account/${A}`)
    assert.throws(() => verifyStateProof(header2.stateRoot, `account/${B}`, { ...rich, key: `account/${B}`, present: { ...rich.present!, key: `account/${B}` } }), { name: 'InvalidProofError' })
    const bProof = served(b2.state, `account/${B}`)
    const doctored = hexOf(dagCbor.encode([10n ** 12n, 1, 0n]))
    assert.throws(() => verifyStateProof(header2.stateRoot, `account/${B}`, { ...bProof, present: { ...bProof.present!, value: doctored } }), { name: 'InvalidProofError' })
    // Skip over B's leaf, claiming its neighbours are adjacent.
    const i = bProof.present!.index
    const all = [...b2.state.accounts.keys()].map(k => `account/${k}`)
      .concat([...b2.state.assets.keys()].map(k => `asset/${k}`), [...b2.state.parcels.keys()].map(k => `parcel/${k}`), [...b2.state.spaces.keys()].map(k => `space/${k}`)).sort()
    assert.equal(all[i], `account/${B}`)
    const around = (j: number): InclusionProof | undefined => j >= 0 && j < all.length ? proveKey(b2.state, all[j]).present : undefined
    assert.throws(() => verifyStateProof(header2.stateRoot, `account/${B}`, { root: header2.stateRoot, key: `account/${B}`, before: around(i - 1), after: around(i + 1) }), { name: 'InvalidProofError' })
    // The proof's own root field is not trusted: a server cannot swap in its own root.
    const forged = new MerkleTree([{ key: `account/${B}`, value: dagCbor.encode([10n ** 12n, 0, 0n]) }])
    assert.throws(() => verifyStateProof(header2.stateRoot, `account/${B}`, forged.prove(`account/${B}`)), { name: 'InvalidProofError' })
  })
})
