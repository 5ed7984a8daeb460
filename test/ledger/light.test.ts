/**
 * The light client (src/ledger/light.ts), pure: headers signed by hand-made validator sets. It
 * follows set changes CometBFT's way (more than a third of the trusted set's power must vouch for
 * a new set, bisecting when too little does), refuses a set nothing trusted vouches for, a set
 * that is not the one the header names, a thin commit, a changed genesis, and a lying proof.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { sha256 } from '../../src/identity/hash.ts'
import { signVote } from '../../src/ledger/chain.ts'
import {
  blockHash, decodeAccountValue, genesisTrust, MAX_COMMIT_VOTES, MAX_LIGHT_CLIENT_STEPS, MAX_VALIDATORS, verifyHeaderCommit, validatorsHash, verifyHeaderAt, verifyLightClientProof,
  type BlockHeader, type SignedHeader, type TrustedSet, type Validator
} from '../../src/ledger/light.ts'
import { MerkleTree } from '../../src/ledger/merkle.ts'
import { LedgerView, MAX_VALIDATOR_SETS_KEPT } from '../../src/ledger/view.ts'
import type { LedgerComponents } from '../../src/ledger/types.ts'
import * as dagCbor from '@ipld/dag-cbor'
import { lightClient, MAX_WALLET_HEADER_FETCHES, MAX_WALLET_PROOFS } from '../../web/src/panels/wallet-verify.ts'

const CHAIN = 'peerverse-light-test'
const keys: Ed25519Key[] = Array.from({ length: 200 }, (_, i) => ed25519KeyFromSeed(sha256(`light-test-validator-${i}`)))
const did = (i: number): string => didFromPublicKey(keys[i].publicKey)
const setOf = (...ids: number[]): Validator[] => ids.map(i => ({ id: did(i), power: 10 }))

function header (height: number, validators: Validator[], stateRoot = '00'.repeat(32)): BlockHeader {
  return { chain: CHAIN, height, time: 1_700_000_000_000 + height, prev: null, proposer: validators[0].id, txRoot: '11'.repeat(32), stateRoot, validatorsHash: validatorsHash(validators) }
}

/** A header at `height` signed by `signers` (indices), with the set the peer says signed it. */
async function signed (height: number, ids: number[], signers = ids, stateRoot?: string): Promise<SignedHeader> {
  const validators = setOf(...ids)
  const h = header(height, validators, stateRoot)
  const commit = await Promise.all(signers.map(async i => await signVote(keys[i], { type: 'precommit', height, round: 0, value: blockHash(h) })))
  return { header: h, commit, validators }
}

/** A chain whose set at each height is `setAt(height)`, and a fetch that counts what it is asked. */
function chainOf (setAt: (h: number) => number[]): { fetch: (h: number) => Promise<SignedHeader>, asked: number[] } {
  const asked: number[] = []
  return { asked, fetch: async h => { asked.push(h); return await signed(h, setAt(h)) } }
}

const genesis = (ids: number[]): TrustedSet => ({ chain: CHAIN, height: 0, validators: setOf(...ids) })

describe('light client', () => {
  it('trusts a header its trusted set signed, in one fetch', async () => {
    const c = chainOf(() => [0, 1, 2])
    const r = await verifyHeaderAt(genesis([0, 1, 2]), 9, c.fetch)
    assert.equal(r.trusted.height, 9)
    assert.deepEqual(c.asked, [9])
  })

  it('follows a set change when more than a third of the trusted power signed, and bisects when less did', async () => {
    // 1..4: {0,1,2}; 5..6: {1,2,3}; 7..8: {2,3,4,5}: from genesis to 8 only 2 signs (a third, not more).
    const setAt = (h: number): number[] => (h <= 4 ? [0, 1, 2] : h <= 6 ? [1, 2, 3] : [2, 3, 4, 5])
    let c = chainOf(setAt)
    const near = await verifyHeaderAt(genesis([0, 1, 2]), 6, c.fetch)
    assert.deepEqual(c.asked, [6])
    assert.deepEqual(near.trusted.validators, setOf(1, 2, 3))
    c = chainOf(setAt)
    const far = await verifyHeaderAt(genesis([0, 1, 2]), 8, c.fetch)
    assert.equal(far.trusted.height, 8)
    assert.deepEqual(far.trusted.validators, setOf(2, 3, 4, 5))
    assert.deepEqual(c.asked, [8, 4, 8, 6, 8])
  })

  it('refuses a set that nothing trusted vouches for (UntrustedValidatorsError)', async () => {
    const c = chainOf(h => (h === 1 ? [0, 1, 2] : [7, 8, 9]))
    await assert.rejects(verifyHeaderAt(genesis([0, 1, 2]), 2, c.fetch), { name: 'UntrustedValidatorsError' })
    await assert.rejects(verifyHeaderAt(genesis([0, 1, 2]), 50, c.fetch), { name: 'UntrustedValidatorsError' })
  })

  it(`gives up past MAX_LIGHT_CLIENT_STEPS (${MAX_LIGHT_CLIENT_STEPS}) headers, and reaches a height within them`, async () => {
    // The set moves by one validator a height: only adjacent sets share more than a third.
    const rotating = (h: number): number[] => [h, h + 1, h + 2]
    const ok = await verifyHeaderAt(genesis(rotating(0)), 20, chainOf(rotating).fetch)
    assert.deepEqual(ok.trusted.validators, setOf(...rotating(20)))
    await assert.rejects(verifyHeaderAt(genesis(rotating(0)), 120, chainOf(rotating).fetch), (err: Error) => err.name === 'UntrustedValidatorsError' && /more than 64 headers/.test(err.message))
  })

  it('refuses a set that is not the one the header names, a thin commit, a forged vote and another chain (InvalidCommitError)', async () => {
    const g = genesis([0, 1, 2])
    const good = await signed(3, [0, 1, 2])
    await assert.rejects(verifyHeaderAt(g, 3, async () => ({ ...good, validators: setOf(0, 1, 3) })), { name: 'InvalidCommitError' })
    await assert.rejects(verifyHeaderAt(g, 3, async () => await signed(3, [0, 1, 2], [0, 1])), { name: 'InvalidCommitError' })
    const forged = Uint8Array.from(good.commit[0])
    forged[forged.length - 1] ^= 1
    await assert.rejects(verifyHeaderAt(g, 3, async () => ({ ...good, commit: [forged, ...good.commit.slice(1)] })), { name: 'InvalidCommitError' })
    await assert.rejects(verifyHeaderAt({ ...g, chain: 'another' }, 3, async () => good), { name: 'InvalidCommitError' })
    await assert.rejects(verifyHeaderAt(g, 4, async () => good), { name: 'InvalidCommitError' })
  })

  it(`refuses a commit of more than MAX_COMMIT_VOTES (${MAX_COMMIT_VOTES}) votes, and a set of more than MAX_VALIDATORS (${MAX_VALIDATORS}), before checking their signatures`, async () => {
    const sh = await signed(3, [0, 1, 2])
    // The same three valid votes over and over: each would cost a signature check.
    const padded = Array.from({ length: MAX_COMMIT_VOTES + 1 }, (_, i) => sh.commit[i % 3])
    assert.throws(() => verifyHeaderCommit(sh.header, padded, sh.validators), { name: 'InvalidCommitError', message: /votes/ })
    verifyHeaderCommit(sh.header, padded.slice(0, MAX_COMMIT_VOTES), sh.validators)
    const big = Array.from({ length: MAX_VALIDATORS + 1 }, (_, i) => i)
    const wide = await signed(1, big, [0])
    await assert.rejects(verifyHeaderAt(genesis([0, 1, 2]), 1, async () => wide), { name: 'InvalidCommitError', message: /validators/ })
  })

  it(`the wallet's check asks a lying peer at most MAX_WALLET_PROOFS (${MAX_WALLET_PROOFS}) proofs and MAX_WALLET_HEADER_FETCHES (${MAX_WALLET_HEADER_FETCHES}) headers`, async () => {
    // A peer that lists many assets and answers each proof at another height: every height's
    // header would be asked for and checked.
    const asked: string[] = []
    const stake = (i: number): { id: string, stake: string } => ({ id: did(i), stake: '10000' })
    const api = {
      get: async <T>(path: string): Promise<T> => {
        asked.push(path)
        if (path === '/api/v0/ledger/genesis') return { chain: CHAIN, accounts: [stake(0), stake(1), stake(2)] } as T
        const proof = /key=([^&]+)/.exec(path)
        if (proof != null) return { height: 1000 + asked.length, proof: { root: '00'.repeat(32), key: decodeURIComponent(proof[1]) } } as T
        const height = Number(path.split('/').pop())
        const sh = await signed(height, [0, 1, 2])
        if (path.includes('/block/')) return { header: sh.header, commit: sh.commit.map(b => Buffer.from(b).toString('base64')) } as T
        return { validators: sh.validators } as T
      }
    }
    const client = lightClient(api as never)
    const assets = Array.from({ length: 200 }, (_, i) => ({ id: `asset-${i}`, name: 'hat', content: 'bafy' }))
    await assert.rejects(client.check(did(0), assets, []), { name: 'TooManyHeadersError' })
    const headerAsks = asked.filter(p => p.includes('/block/')).length
    assert.ok(headerAsks <= MAX_WALLET_HEADER_FETCHES, `${headerAsks} headers asked`)
    // More listed than it proves: refused before a single proof is asked.
    asked.length = 0
    const many = Array.from({ length: MAX_WALLET_PROOFS }, (_, i) => ({ id: `asset-${i}`, name: 'hat', content: 'bafy' })) // with the account, one over
    await assert.rejects(client.check(did(0), many, []), { name: 'TooManyToProveError' })
    assert.equal(asked.filter(p => p.includes('/proof')).length, 0)
  })

  it('the wallet pins the chain it first checked: a peer answering for a chain of another name is GenesisChangedError', async (t) => {
    // This browser's storage, for the wallet's check run here.
    const stored = new Map<string, string>()
    const g = globalThis as { localStorage?: unknown }
    const before = g.localStorage
    g.localStorage = { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => { stored.set(k, v) } }
    t.after(() => { g.localStorage = before })
    const peer = (chain: string, ids: number[]) => ({
      get: async <T>(path: string): Promise<T> => {
        if (path === '/api/v0/ledger/genesis') return { chain, accounts: ids.map(i => ({ id: did(i), stake: '10000' })) } as T
        throw Object.assign(new Error('not served'), { name: 'NotServedError' })
      }
    })
    // The honest peer: its chain is pinned on first sight (the check then stops at a proof it does not serve).
    await assert.rejects(lightClient(peer(CHAIN, [0, 1, 2]) as never).check(did(0), [], []), { name: 'NotServedError' })
    // A peer that renames the chain to bring validators of its own.
    await assert.rejects(lightClient(peer(`${CHAIN}-other`, [7, 8, 9]) as never).check(did(0), [], []), { name: 'GenesisChangedError' })
    await assert.rejects(lightClient(peer(CHAIN, [7, 8, 9]) as never).check(did(0), [], []), { name: 'GenesisChangedError' })
  })

  it("the wallet checks an asset's content and name and a parcel's place as the peer lists them (ProofMismatchError)", async (t) => {
    const g = globalThis as { localStorage?: unknown }
    const before = g.localStorage
    g.localStorage = undefined
    t.after(() => { g.localStorage = before })
    const me = did(9)
    const asset = { id: 'bafy-asset', name: 'hat', content: 'bafy-hat-model' }
    const parcel = { id: 'bafy-parcel', space: 'bafy-plaza', x: 4, y: 5, w: 2, h: 3 }
    const tree = new MerkleTree([
      { key: `account/${me}`, value: dagCbor.encode([1234, 5, 0]) },
      { key: `asset/${asset.id}`, value: dagCbor.encode([me, me, asset.content, asset.name, 2]) },
      { key: `parcel/${parcel.id}`, value: dagCbor.encode([me, parcel.space, parcel.x, parcel.y, parcel.w, parcel.h]) }
    ])
    const sh = await signed(4, [0, 1, 2], [0, 1, 2], tree.root)
    const api = {
      get: async <T>(path: string): Promise<T> => {
        if (path === '/api/v0/ledger/genesis') return { chain: CHAIN, accounts: [0, 1, 2].map(i => ({ id: did(i), stake: '10000' })) } as T
        const key = /key=([^&]+)/.exec(path)
        if (key != null) return { height: 4, proof: JSON.parse(JSON.stringify(tree.prove(decodeURIComponent(key[1])))) } as T
        if (path.includes('/block/')) return { header: sh.header, commit: sh.commit.map(b => Buffer.from(b).toString('base64')) } as T
        return { validators: sh.validators } as T
      }
    }
    const client = lightClient(api as never)
    assert.deepEqual(await client.check(me, [asset], [parcel]), { height: 4, balance: '1234' })
    // The peer renames the asset, points it at other content, or moves the parcel.
    for (const [assets, parcels] of [[[{ ...asset, name: 'crown' }], [parcel]], [[{ ...asset, content: 'bafy-evil-model' }], [parcel]], [[asset], [{ ...parcel, x: 40 }]], [[asset], [{ ...parcel, space: 'bafy-other' }]]] as const) {
      await assert.rejects(client.check(me, [...assets], [...parcels]), { name: 'ProofMismatchError' })
    }
  })

  it('pins the genesis set: another set for the same chain is GenesisChangedError', () => {
    const file = { chain: CHAIN, accounts: [{ id: did(0), stake: '10000' }, { id: did(1), stake: '0' }] }
    const first = genesisTrust(file)
    assert.deepEqual(first.validators, [{ id: did(0), power: 10 }])
    assert.deepEqual(genesisTrust(file, validatorsHash(first.validators)).validators, first.validators)
    assert.throws(() => genesisTrust({ ...file, accounts: [{ id: did(1), stake: '10000' }] }, validatorsHash(first.validators)), { name: 'GenesisChangedError' })
  })

  it('checks a balance under a signed header and catches a changed value (InvalidProofError)', async () => {
    const account = dagCbor.encode([1234, 5, 0])
    const tree = new MerkleTree([{ key: `account/${did(9)}`, value: account }, { key: 'asset/x', value: dagCbor.encode([did(9)]) }])
    const sh = await signed(4, [0, 1, 2], [0, 1, 2], tree.root)
    const proof = tree.prove(`account/${did(9)}`)
    const value = verifyLightClientProof(sh.header, sh.commit, sh.validators, `account/${did(9)}`, JSON.parse(JSON.stringify(proof)))
    assert.equal(decodeAccountValue(value!).balance, 1234n)
    const lie = structuredClone(proof)
    lie.present!.value = Buffer.from(dagCbor.encode([999999, 5, 0])).toString('hex')
    assert.throws(() => verifyLightClientProof(sh.header, sh.commit, sh.validators, `account/${did(9)}`, lie), { name: 'InvalidProofError' })
  })

  it(`the peer answers the set that signed each height, keeping the last ${MAX_VALIDATOR_SETS_KEPT} changes`, () => {
    // The view alone (nothing here reads its store): the state is moved on by hand, as blocks would.
    class View extends LedgerView {
      advance (ids: number[]): void {
        this.state = { ...this.state, height: this.state.height + 1, validators: setOf(...ids) }
        this.noteSigners()
      }
    }
    const g = { chain: CHAIN, time: 0, accounts: [{ id: did(0), balance: 0n, stake: 10_000n }] }
    const view = new View({ genesis: g, store: {} } as unknown as LedgerComponents)
    assert.deepEqual(view.validatorsAt(1), setOf(0))
    assert.equal(view.validatorsAt(0), undefined)
    assert.equal(view.validatorsAt(2), undefined)
    view.advance([0]) // height 1 committed: the same set signs 2
    view.advance([1]) // height 2 committed: {1} signs 3
    assert.deepEqual(view.validatorsAt(2), setOf(0))
    assert.deepEqual(view.validatorsAt(3), setOf(1))
    for (let i = 0; i < MAX_VALIDATOR_SETS_KEPT; i++) view.advance([i % 2 === 0 ? 2 : 3])
    // The first sets are forgotten (a light client asking that far back bisects from later ones).
    assert.equal(view.validatorsAt(1), undefined)
    assert.equal(view.validatorsAt(3), undefined)
    const top = view.state.height + 1
    assert.deepEqual(view.validatorsAt(top), view.state.validators)
    assert.deepEqual(view.validatorsAt(top - MAX_VALIDATOR_SETS_KEPT + 1), setOf(top % 2 === 0 ? 3 : 2))
  })
})

