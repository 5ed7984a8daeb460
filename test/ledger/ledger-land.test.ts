/**
 * The land rules (src/ledger/land.ts) through the state transition: a space is proven by its own
 * signed record carried by its first land transaction; its owner claims anywhere in it, others
 * only inside the owner's grant or at the owner's price (paid to the owner in the same
 * transaction); an unknown space, a forged record, a claim with neither grant nor price, and every
 * limit past its bound are refused by name.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { recordId, signRecord } from '../../src/identity/record.ts'
import { decodeTx, signTx, MAX_AMOUNT, MAX_PARCEL_SIDE, type Tx, type TxOp, type TxPayload } from '../../src/ledger/tx.ts'
import { applyBlock, buildBlock, checkBlock, genesisState, stateRoot, totalSupply, txRoot, type Block, type LedgerState, type Receipt } from '../../src/ledger/state.ts'
import { MAX_GRANTS_PER_SPACE, MAX_LAND_PRICE, MAX_SPACE_RECORD_BYTES, MAX_SPACE_SIDE, SPACE_RECORD_TYPE } from '../../src/ledger/land.ts'
import { createDescriptor, SPACE_TYPE } from '../../src/space/records.ts'

const CHAIN = 'peerverse-land-test'
const keys: Ed25519Key[] = Array.from({ length: 4 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(i + 11)))
const [A, B, C, D] = keys.map(k => didFromPublicKey(k.publicKey))
const [ka, kb, , kd] = keys
/** A's space (256 x 256, the space capability's default grid) and B's. */
const PLAZA = await createDescriptor(ka, { name: 'plaza', created: 1 })
const YARD = await createDescriptor(kb, { name: 'yard', created: 1, grid: { width: 64, depth: 32 } })

async function tx (key: Ed25519Key, nonce: number, op: TxOp, fee = 1n): Promise<Tx> {
  return await signTx(key, { chain: CHAIN, nonce, fee, ...op } as TxPayload)
}

function genesis (balances: Array<[string, bigint]>): LedgerState {
  return genesisState({ chain: CHAIN, time: 0, accounts: balances.map(([id, balance]) => ({ id, balance })) })
}

/** Builds a block (as proposer C) and has another node check it. */
function step (state: LedgerState, txs: Tx[]): { block: Block, state: LedgerState, receipts: Receipt[] } {
  const built = buildBlock(state, txs.map(t => t.bytes), C, (state.height + 1) * 1000)
  const checked = checkBlock(state, built.block)
  assert.equal(stateRoot(checked.state), built.block.header.stateRoot)
  assert.deepEqual(checked.receipts, built.receipts)
  assert.deepEqual(built.skipped, [])
  return built
}

const errorsOf = (receipts: Receipt[]): Array<string | undefined> => receipts.map(r => r.ok ? undefined : r.error)

/** A record's bytes under any envelope, signed or not, to forge with. */
function envelope (author: string, payload: unknown, sig: Uint8Array, type = SPACE_TYPE): Uint8Array {
  return dagCbor.encode({ v: 1, type, author, payload, sig })
}

describe('land rules', () => {
  it('the ledger reads the space capability\'s own descriptors', () => {
    assert.equal(SPACE_RECORD_TYPE, SPACE_TYPE)
  })

  it('an owner claims in its own space: the first claim proves the space and records its owner', async () => {
    const s0 = genesis([[A, 100n]])
    const b1 = step(s0, [
      await tx(ka, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 16, h: 16, record: PLAZA.bytes }),
      await tx(ka, 1, { kind: 'claim', space: PLAZA.id, x: 16, y: 0, w: 240, h: 256 }) // no record needed now, up to the edge
    ])
    assert.deepEqual(errorsOf(b1.receipts), [undefined, undefined])
    assert.deepEqual(b1.state.spaces.get(PLAZA.id), { id: PLAZA.id, owner: A, width: 256, depth: 256, price: 0n })
    assert.equal(b1.state.parcels.size, 2)
    assert.equal(b1.state.accounts.get(A)?.balance, 98n)
  })

  it('refuses a claim in a space the ledger cannot prove (UnknownSpaceError), and one outside the grid (OutsideSpaceError)', async () => {
    const s0 = genesis([[A, 100n], [B, 100n]])
    const { state, receipts } = step(s0, [
      await tx(kb, 0, { kind: 'claim', space: 'notaspace', x: 0, y: 0, w: 4, h: 4 }),
      await tx(kb, 1, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 4, h: 4 }), // a real space, but not proven to the ledger
      await tx(ka, 0, { kind: 'claim', space: PLAZA.id, x: 250, y: 0, w: 7, h: 1, record: PLAZA.bytes }), // runs past x = 256
      await tx(kb, 2, { kind: 'claim', space: YARD.id, x: 0, y: 30, w: 4, h: 4, record: YARD.bytes }) // the yard is 32 deep
    ])
    assert.deepEqual(errorsOf(receipts), ['UnknownSpaceError', 'UnknownSpaceError', 'OutsideSpaceError', 'OutsideSpaceError'])
    // Failed: each paid its fee, nothing else changed (not even the space's registration).
    assert.equal(state.parcels.size, 0)
    assert.equal(state.spaces.size, 0)
    assert.equal(state.accounts.get(B)?.balance, 97n)
  })

  it("refuses a claim in another's space without a grant or a price (NotGrantedError), and a grant or price from anyone but the owner", async () => {
    const s1 = step(genesis([[A, 100n], [B, 100n]]), [await tx(ka, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 1, h: 1, record: PLAZA.bytes })]).state
    const { state, receipts } = step(s1, [
      await tx(kb, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 100, w: 256, h: 156 }),
      await tx(kb, 1, { kind: 'land-grant', space: PLAZA.id, to: B, x: 0, y: 0, w: 256, h: 256 }),
      await tx(kb, 2, { kind: 'land-price', space: PLAZA.id, price: 1n }),
      await tx(kb, 3, { kind: 'claim', space: PLAZA.id, x: 10, y: 10, w: 1, h: 1 })
    ])
    assert.deepEqual(errorsOf(receipts), ['NotGrantedError', 'NotSpaceOwnerError', 'NotSpaceOwnerError', 'NotGrantedError'])
    assert.equal(state.parcels.size, 1)
    assert.equal(state.grants.size, 0)
    assert.equal(state.spaces.get(PLAZA.id)?.price, 0n)
  })

  it("with the owner's grant a claim inside it succeeds; outside it, by another, or after revocation it is refused", async () => {
    const s0 = genesis([[A, 100n], [B, 100n], [D, 100n]])
    // The grant itself proves the space (its first land transaction).
    const g = await tx(ka, 0, { kind: 'land-grant', space: PLAZA.id, to: B, x: 100, y: 100, w: 50, h: 50, record: PLAZA.bytes })
    const b1 = step(s0, [g])
    assert.deepEqual(b1.receipts[0], { tx: g.id, sender: A, height: 1, ok: true, created: g.id })
    assert.deepEqual(b1.state.grants.get(g.id), { id: g.id, space: PLAZA.id, grantee: B, x: 100, y: 100, w: 50, h: 50 })
    const inside = await tx(kb, 0, { kind: 'claim', space: PLAZA.id, x: 100, y: 100, w: 20, h: 50 })
    const b2 = step(b1.state, [
      inside,
      await tx(kb, 1, { kind: 'claim', space: PLAZA.id, x: 140, y: 100, w: 11, h: 1 }), // one column past the grant
      await tx(kd, 0, { kind: 'claim', space: PLAZA.id, x: 130, y: 100, w: 5, h: 5 }), // D has no grant
      await tx(kb, 2, { kind: 'claim', space: PLAZA.id, x: 110, y: 100, w: 5, h: 5 }) // B's grant, but B's own parcel is there
    ])
    assert.deepEqual(errorsOf(b2.receipts), [undefined, 'NotGrantedError', 'NotGrantedError', 'ParcelOverlapError'])
    assert.deepEqual(b2.state.parcels.get(inside.id), { id: inside.id, owner: B, space: PLAZA.id, x: 100, y: 100, w: 20, h: 50 })
    assert.equal(b2.state.accounts.get(A)?.balance, 99n) // a grant costs B nothing but fees
    // Revoked: no new claims under it; the parcel claimed stays. Only the owner revokes.
    const b3 = step(b2.state, [
      await tx(kb, 3, { kind: 'land-revoke', grant: g.id }),
      await tx(ka, 1, { kind: 'land-revoke', grant: 'bafy-no-such-grant' }),
      await tx(ka, 2, { kind: 'land-revoke', grant: g.id }),
      await tx(kb, 4, { kind: 'claim', space: PLAZA.id, x: 130, y: 130, w: 5, h: 5 })
    ])
    assert.deepEqual(errorsOf(b3.receipts), ['NotSpaceOwnerError', 'UnknownGrantError', undefined, 'NotGrantedError'])
    assert.equal(b3.state.grants.size, 0)
    assert.equal(b3.state.parcels.get(inside.id)?.owner, B)
  })

  it("with the owner's price a claim succeeds and the owner is paid in the same transaction", async () => {
    const s0 = genesis([[A, 100n], [B, 1000n], [D, 50n]])
    const b1 = step(s0, [await tx(ka, 0, { kind: 'land-price', space: PLAZA.id, price: 3n, record: PLAZA.bytes })])
    assert.equal(b1.state.spaces.get(PLAZA.id)?.price, 3n)
    const b2 = step(b1.state, [
      await tx(kb, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 10, h: 20, maxPrice: 3n }, 2n), // 200 cells at 3: 600
      await tx(kd, 0, { kind: 'claim', space: PLAZA.id, x: 50, y: 50, w: 4, h: 4, maxPrice: 3n }) // 48 + fee 1 is less than 50...
    ])
    assert.deepEqual(errorsOf(b2.receipts), [undefined, undefined])
    assert.equal(b2.state.accounts.get(B)?.balance, 1000n - 600n - 2n)
    assert.equal(b2.state.accounts.get(D)?.balance, 50n - 48n - 1n)
    assert.equal(b2.state.accounts.get(A)?.balance, 99n + 600n + 48n)
    assert.equal(totalSupply(b2.state), totalSupply(s0))
    // ...but now D cannot pay for one more cell: refused, and the owner is not paid.
    const b3 = step(b2.state, [await tx(kd, 1, { kind: 'claim', space: PLAZA.id, x: 60, y: 60, w: 1, h: 1, maxPrice: 3n })])
    assert.deepEqual(errorsOf(b3.receipts), ['InsufficientFundsError'])
    assert.equal(b3.state.accounts.get(A)?.balance, 99n + 600n + 48n)
    assert.equal(b3.state.accounts.get(D)?.balance, 0n)
    // A claim pays at most its maxPrice a cell: over it (the owner raised the price), refused whole.
    const b3a = step(b3.state, [
      await tx(ka, 1, { kind: 'land-price', space: PLAZA.id, price: 5n }),
      await tx(kb, 1, { kind: 'claim', space: PLAZA.id, x: 70, y: 70, w: 1, h: 1, maxPrice: 3n }),
      await tx(kb, 2, { kind: 'claim', space: PLAZA.id, x: 71, y: 70, w: 1, h: 1, maxPrice: 5n })
    ])
    assert.deepEqual(errorsOf(b3a.receipts), [undefined, 'PriceAboveLimitError', undefined])
    assert.equal(b3a.state.accounts.get(B)?.balance, 1000n - 600n - 2n - 1n - 5n - 1n)
    assert.equal(b3a.state.accounts.get(A)?.balance, 99n + 600n + 48n - 1n + 5n)
    // Price 0 ends the sale.
    const b4 = step(b3a.state, [await tx(ka, 2, { kind: 'land-price', space: PLAZA.id, price: 0n }), await tx(kb, 3, { kind: 'claim', space: PLAZA.id, x: 200, y: 200, w: 1, h: 1, maxPrice: 5n })])
    assert.deepEqual(errorsOf(b4.receipts), [undefined, 'NotGrantedError'])
  })

  it('a claim that names no maxPrice pays nothing: an owner who revokes a grant or sets a price ahead of it cannot charge it (PriceAboveLimitError)', async () => {
    const rich = 1n << 50n
    const s0 = genesis([[A, 100n], [B, rich]])
    const b1 = step(s0, [await tx(ka, 0, { kind: 'land-grant', space: PLAZA.id, to: B, x: 0, y: 0, w: 10, h: 10, record: PLAZA.bytes })])
    const grantId = b1.receipts[0].created!
    // B claims inside its grant; the owner's revocation and a high price land first, in the same block.
    const b2 = step(b1.state, [
      await tx(ka, 1, { kind: 'land-revoke', grant: grantId }),
      await tx(ka, 2, { kind: 'land-price', space: PLAZA.id, price: MAX_LAND_PRICE }),
      await tx(kb, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 10, h: 10 })
    ])
    assert.deepEqual(errorsOf(b2.receipts), [undefined, undefined, 'PriceAboveLimitError'])
    assert.equal(b2.state.accounts.get(B)?.balance, rich - 1n)
    assert.equal(b2.state.parcels.size, 0)
    assert.equal(totalSupply(b2.state), totalSupply(s0))
  })

  it('refuses a forged or mismatched space record by name, at decoding: such a transaction is in no block', async () => {
    const payload = { name: 'fake', grid: { width: 256, depth: 256, cell: 16 }, private: false, created: 1 }
    // A's name on a record A never signed: its CID is a space id, but the signature does not hold.
    const forged = envelope(A, payload, new Uint8Array(64).fill(7))
    // A record of another type, and A's real record offered for another space.
    const post = (await signRecord(ka, 'peerverse/post', payload)).bytes
    const cases: Array<[string, Uint8Array]> = [[recordId(forged), forged], [recordId(post), post], [YARD.id, PLAZA.bytes]]
    const s0 = genesis([[B, 100n]])
    for (const [space, record] of cases) {
      const op = { kind: 'claim', space, x: 0, y: 0, w: 1, h: 1, record } as const
      await assert.rejects(tx(kb, 0, op), { name: 'InvalidSpaceRecordError' })
      // Signed anyway (a correct transaction signature around the bad record): refused at decode.
      const bytes = (await signRecord(kb, 'peerverse/tx', { chain: CHAIN, nonce: 0, fee: 1, ...op })).bytes
      assert.throws(() => decodeTx(bytes, CHAIN), { name: 'InvalidSpaceRecordError' })
      assert.throws(() => buildBlock(s0, [bytes], C, 1000), { name: 'InvalidBlockError', message: /InvalidSpaceRecordError/ })
      const built = buildBlock(s0, [], C, 1000)
      assert.throws(() => applyBlock(s0, { header: { ...built.block.header, txRoot: txRoot([recordId(bytes)]) }, txs: [bytes] }), { name: 'InvalidBlockError', message: /InvalidSpaceRecordError/ })
    }
  })

  describe('limits', () => {
    it(`a space record over MAX_SPACE_RECORD_BYTES (${MAX_SPACE_RECORD_BYTES}) is refused; one at the bound is read`, async () => {
      const payload = (n: number): unknown => ({ name: 'n'.repeat(n), grid: { width: 16, depth: 16, cell: 16 }, private: false, created: 1 })
      // Find the name length that makes the record exactly MAX_SPACE_RECORD_BYTES.
      const base = (await signRecord(ka, SPACE_TYPE, payload(1000))).bytes.length
      const exact = (await signRecord(ka, SPACE_TYPE, payload(1000 + MAX_SPACE_RECORD_BYTES - base))).bytes
      assert.equal(exact.length, MAX_SPACE_RECORD_BYTES)
      const over = (await signRecord(ka, SPACE_TYPE, payload(1001 + MAX_SPACE_RECORD_BYTES - base))).bytes
      assert.equal(over.length, MAX_SPACE_RECORD_BYTES + 1)
      const ok = await tx(ka, 0, { kind: 'claim', space: recordId(exact), x: 0, y: 0, w: 16, h: 16, record: exact })
      const { state, receipts } = step(genesis([[A, 100n]]), [ok])
      assert.deepEqual(errorsOf(receipts), [undefined])
      assert.equal(state.spaces.get(recordId(exact))?.owner, A)
      await assert.rejects(tx(ka, 0, { kind: 'claim', space: recordId(over), x: 0, y: 0, w: 1, h: 1, record: over }), { name: 'InvalidSpaceRecordError', message: /over 2048/ })
    })

    it(`a grid side over MAX_SPACE_SIDE (${MAX_SPACE_SIDE}) is refused`, async () => {
      for (const [side, name] of [[MAX_SPACE_SIDE, undefined], [MAX_SPACE_SIDE + 1, 'InvalidSpaceRecordError'], [0, 'InvalidSpaceRecordError']] as const) {
        const rec = (await signRecord(ka, SPACE_TYPE, { name: 'wide', grid: { width: side, depth: 8, cell: 16 }, private: false, created: 1 })).bytes
        const made = tx(ka, 0, { kind: 'land-price', space: recordId(rec), price: 1n, record: rec })
        if (name == null) await made
        else await assert.rejects(made, { name })
      }
    })

    it(`a space holds at most MAX_GRANTS_PER_SPACE (${MAX_GRANTS_PER_SPACE}) grants; a revocation makes room`, async () => {
      let state = genesis([[A, 10_000n]])
      const grants: Tx[] = []
      for (let i = 0; i <= MAX_GRANTS_PER_SPACE; i++) {
        grants.push(await tx(ka, i, { kind: 'land-grant', space: PLAZA.id, to: B, x: i % 256, y: 0, w: 1, h: 1, ...(i === 0 ? { record: PLAZA.bytes } : {}) }))
      }
      const b1 = step(state, grants)
      assert.deepEqual(errorsOf(b1.receipts).filter(e => e != null), ['TooManyGrantsError'])
      assert.equal(b1.receipts.at(-1)?.error, 'TooManyGrantsError')
      assert.equal(b1.state.grants.size, MAX_GRANTS_PER_SPACE)
      state = b1.state
      const n = MAX_GRANTS_PER_SPACE + 1
      const b2 = step(state, [await tx(ka, n, { kind: 'land-revoke', grant: grants[0].id }), await tx(ka, n + 1, { kind: 'land-grant', space: PLAZA.id, to: D, x: 0, y: 9, w: 1, h: 1 })])
      assert.deepEqual(errorsOf(b2.receipts), [undefined, undefined])
      assert.equal(b2.state.grants.size, MAX_GRANTS_PER_SPACE)
    })

    it('a claim or grant looks only at its own space\'s grants, however many other spaces hold', async () => {
      const s0 = genesis([[A, 1000n], [B, 1000n]])
      const b1 = step(s0, [await tx(ka, 0, { kind: 'land-price', space: PLAZA.id, price: 1n, record: PLAZA.bytes })])
      // Grants of other spaces (at most MAX_GRANTS_PER_SPACE each, but spaces are many), counting each look.
      let looks = 0
      const others = 5000
      const state = { ...b1.state, grants: new Map(b1.state.grants) }
      for (let i = 0; i < others; i++) {
        const g = { id: `other-${i}`, grantee: B, x: 0, y: 0, w: 1, h: 1 }
        Object.defineProperty(g, 'space', { enumerable: true, get: () => { looks++; return `other-space-${i >> 8}` } })
        state.grants.set(g.id, g as typeof g & { space: string })
      }
      const claims: Tx[] = []
      for (let i = 0; i < 40; i++) claims.push(await tx(kb, i, { kind: 'claim', space: PLAZA.id, x: i, y: 0, w: 1, h: 1, maxPrice: 1n }))
      claims.push(await tx(ka, 1, { kind: 'land-grant', space: PLAZA.id, to: D, x: 0, y: 9, w: 1, h: 1 }))
      const b2 = step(state, claims)
      assert.deepEqual(errorsOf(b2.receipts).filter(e => e != null), [])
      // Each block application reads each grant's space a few times (an index, the state root), not once per claim.
      assert.ok(looks < 10 * others, `${looks} looks at other spaces' grants`)
    })

    it('a claim looks only at the parcels near it, however many other spaces and squares hold', async () => {
      const big = await createDescriptor(ka, { name: 'big', created: 1, grid: { width: 4096, depth: 4096 } })
      const s0 = genesis([[A, 1000n]])
      const b1 = step(s0, [await tx(ka, 0, { kind: 'claim', space: big.id, x: 0, y: 0, w: 1, h: 1, record: big.bytes })])
      // Parcels of other spaces, and of this one far from the claims, counting each look.
      let looks = 0
      const others = 5000
      const state = { ...b1.state, parcels: new Map(b1.state.parcels) }
      for (let i = 0; i < others; i++) {
        const far = i % 2 === 0
        const p = { id: `other-${i}`, owner: B, x: far ? 2048 + (i % 1000) : 0, y: far ? 2048 + (i >> 10) : 0, w: 1, h: 1 }
        Object.defineProperty(p, 'space', { enumerable: true, get: () => { looks++; return far ? big.id : `other-space-${i}` } })
        state.parcels.set(p.id, p as typeof p & { space: string })
      }
      const claims: Tx[] = []
      for (let i = 0; i < 40; i++) claims.push(await tx(ka, i + 1, { kind: 'claim', space: big.id, x: 1 + i, y: 0, w: 1, h: 1 }))
      claims.push(await tx(ka, 41, { kind: 'claim', space: big.id, x: 2048, y: 2048, w: 1, h: 1 })) // on a far parcel: still refused
      const b2 = step(state, claims)
      assert.deepEqual(errorsOf(b2.receipts).filter(e => e != null), ['ParcelOverlapError'])
      assert.ok(looks < 10 * others, `${looks} looks at parcels far from the claims`)
    })

    it(`a price over MAX_LAND_PRICE is malformed; at the bound, the largest claim's price is exact bigint arithmetic and an owner's overflow is refused`, async () => {
      await assert.rejects(tx(ka, 0, { kind: 'land-price', space: PLAZA.id, price: MAX_LAND_PRICE + 1n }), { name: 'MalformedTxError' })
      await assert.rejects(tx(ka, 0, { kind: 'land-price', space: PLAZA.id, price: -1n }), { name: 'MalformedTxError' })
      await assert.rejects(tx(kb, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 1, h: 1, maxPrice: MAX_LAND_PRICE + 1n }), { name: 'MalformedTxError' })
      await tx(kb, 0, { kind: 'claim', space: PLAZA.id, x: 0, y: 0, w: 1, h: 1, maxPrice: MAX_LAND_PRICE })
      const big = await createDescriptor(ka, { name: 'big', created: 1, grid: { width: 2048, depth: 2048 } })
      const cost = MAX_LAND_PRICE * BigInt(MAX_PARCEL_SIDE) * BigInt(MAX_PARCEL_SIDE)
      assert.ok(cost > BigInt(Number.MAX_SAFE_INTEGER)) // past what a JS number holds exactly
      const s0 = genesis([[A, 1000n], [B, cost + 10n], [D, cost + 10n]])
      const b1 = step(s0, [
        await tx(ka, 0, { kind: 'land-price', space: big.id, price: MAX_LAND_PRICE, record: big.bytes }),
        await tx(kb, 0, { kind: 'claim', space: big.id, x: 0, y: 0, w: MAX_PARCEL_SIDE, h: MAX_PARCEL_SIDE, maxPrice: MAX_LAND_PRICE })
      ])
      assert.deepEqual(errorsOf(b1.receipts), [undefined, undefined])
      assert.equal(b1.state.accounts.get(B)?.balance, 9n)
      assert.equal(b1.state.accounts.get(A)?.balance, 999n + cost)
      // The owner near MAX_AMOUNT: one more sale would overflow its balance, so the claim is refused whole.
      const rich = genesis([[A, MAX_AMOUNT - 5n], [D, cost + 10n]])
      const b2 = step(rich, [
        await tx(ka, 0, { kind: 'land-price', space: big.id, price: MAX_LAND_PRICE, record: big.bytes }),
        await tx(kd, 0, { kind: 'claim', space: big.id, x: 0, y: 0, w: MAX_PARCEL_SIDE, h: MAX_PARCEL_SIDE, maxPrice: MAX_LAND_PRICE })
      ])
      assert.deepEqual(errorsOf(b2.receipts), [undefined, 'InsufficientFundsError'])
      assert.equal(b2.state.accounts.get(D)?.balance, cost + 9n)
      assert.equal(b2.state.parcels.size, 0)
      assert.equal(totalSupply(b2.state), totalSupply(rich))
    })
  })
})
