/**
 * The ledger between real `peerverse` processes on loopback: the embedded single-validator devnet
 * funds its user and finalizes payments; a follower joins with the genesis file and pays back;
 * a wallet submits many transactions in one request and gets a result for each;
 * four validators agree on every block under load, keep committing while one is killed (kill -9),
 * take it back at the same state root, and commit exactly one of two transactions spending the
 * same nonce through different validators.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { initIdentity } from '../../src/identity/keystore.ts'
import { devnetGenesis, genesisJson } from '../../src/ledger/genesis.ts'
import { signTx } from '../../src/ledger/tx.ts'
import { MAX_NONCE_AHEAD } from '../../src/ledger/mempool.ts'
import { faucetDid, faucetKey } from '../../src/ledger/genesis.ts'
import { MAX_API_SUBMIT_BATCH_TXS } from '../../src/api/server.ts'
import { verifyLightClientProof } from '../../src/ledger/chain.ts'
import { decodeAccountValue, type BlockHeader, type Validator } from '../../src/ledger/state.ts'
import type { StateProof } from '../../src/ledger/merkle.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'

const set = new PeerSet()

interface Balance { balance: string, nonce: number, height: number }
interface Status { chain: string, height: number, lastBlock: string | null, validators: Array<{ id: string }> }
interface TxStatus { status: string, height?: number, error?: string }

async function balance (p: CliPeer, did = ''): Promise<bigint> {
  return BigInt((await p.api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent(did)}`)).balance)
}

async function chain (p: CliPeer): Promise<Status> {
  return await p.api.request<Status>('GET', '/api/v0/ledger/status')
}

async function blockHashAt (p: CliPeer, height: number): Promise<{ hash: string, stateRoot: string }> {
  const b = await p.api.request<{ header: { stateRoot: string, prev: string | null } }>('GET', `/api/v0/ledger/block/${height}`)
  const next = await p.api.request<{ header: { prev: string } }>('GET', `/api/v0/ledger/block/${height + 1}`).catch(() => undefined)
  return { hash: next?.header.prev ?? '', stateRoot: b.header.stateRoot }
}

/** POST /api/v0/ledger/submit-batch with a raw JSON body; the status and the parsed answer. */
async function submitBatch (p: CliPeer, body: unknown): Promise<{ status: number, json: { results?: Array<Record<string, unknown>>, error?: string } }> {
  const res = await p.api.raw('POST', '/api/v0/ledger/submit-batch', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
  return { status: res.status, json: await res.json() as { results?: Array<Record<string, unknown>>, error?: string } }
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')

async function final (p: CliPeer, id: string): Promise<TxStatus> {
  return await waitFor(`tx ${id} final`, async () => {
    const s = await p.api.request<TxStatus>('GET', `/api/v0/ledger/tx/${id}`)
    return s.status === 'committed' || s.status === 'rejected' ? s : undefined
  }, 30_000, 100)
}

describe('ledger', { timeout: 300_000 }, () => {
  after(async () => { await set.cleanup() })

  describe('the embedded single-validator devnet', () => {
    let a: CliPeer
    let b: CliPeer
    /** A's space, made by the parcel test. */
    let plaza: string | undefined
    before(async () => {
      a = await set.start()
      b = await set.start({ bootstrap: [a.addr], extra: ['--genesis', join(a.dataDir, 'genesis.json')] })
    })

    it('funds the local user and finalizes a payment; a follower joins, gets faucet funds and pays back', async () => {
      assert.ok(await balance(a) > 0n, 'the devnet validator starts funded')
      const r = await runCli(['pay', b.ready.did, '1234', '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      assert.equal((JSON.parse(r.stdout) as TxStatus).status, 'committed')
      await waitFor('the follower sees the payment', async () => await balance(b) === 1234n, 30_000)
      assert.equal((await chain(b)).chain, (await chain(a)).chain)
      const f = await runCli(['faucet', '--data', b.dataDir, '--json'])
      assert.equal(f.code, 0, f.stderr)
      await waitFor('faucet funds arrive', async () => await balance(b) > 1234n, 30_000)
      const back = await runCli(['pay', a.ready.did, '1000', '--data', b.dataDir, '--json'])
      assert.equal(back.code, 0, back.stderr)
      assert.equal((JSON.parse(back.stdout) as TxStatus).status, 'committed')
      // Both hold the same chain.
      const h = Math.min((await chain(a)).height, (await chain(b)).height) - 1
      assert.deepEqual(await blockHashAt(a, h), await blockHashAt(b, h))
    })

    it('rejects bad transactions with named reasons', async () => {
      let r = await runCli(['pay', b.ready.did, '99999999999999', '--data', b.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /InsufficientFundsError/)
      r = await runCli(['pay', b.ready.did, '1.5', '--data', b.dataDir])
      assert.equal(r.code, 2)
      r = await runCli(['pay', 'did:key:nope', '5', '--data', b.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /did:key/)
      const status = await chain(a)
      const wrongChain = await signTx(faucetKey(status.chain), { chain: 'another-chain', nonce: 0, fee: 1n, kind: 'transfer', to: b.ready.did, amount: 5n })
      const res = await a.api.raw('POST', '/api/v0/ledger/submit', { body: JSON.stringify({ tx: Buffer.from(wrongChain.bytes).toString('base64') }), headers: { 'content-type': 'application/json' } })
      assert.equal(res.status, 400)
      assert.equal((await res.json() as { error: string }).error, 'WrongChainError')
      // A nonce that skips too far ahead, and a forged sender (a byte of the signature changed, whatever its nonce).
      const faucet = faucetDid(status.chain)
      const { nonce } = await a.api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent(faucet)}`)
      const skip = await signTx(faucetKey(status.chain), { chain: status.chain, nonce: nonce + MAX_NONCE_AHEAD, fee: 1n, kind: 'transfer', to: b.ready.did, amount: 5n })
      const stale = await signTx(faucetKey(status.chain), { chain: status.chain, nonce: 0, fee: 1n, kind: 'transfer', to: b.ready.did, amount: 6n })
      const forge = (bytes: Uint8Array): string => { const f = Uint8Array.from(bytes); f[12] ^= 1; return Buffer.from(f).toString('base64') }
      const submit = async (tx: string): Promise<{ status: number, error: string }> => {
        const r = await a.api.raw('POST', '/api/v0/ledger/submit', { body: JSON.stringify({ tx }), headers: { 'content-type': 'application/json' } })
        return { status: r.status, error: (await r.json() as { error: string }).error }
      }
      assert.deepEqual(await submit(Buffer.from(skip.bytes).toString('base64')), { status: 400, error: 'NonceGapError' })
      assert.deepEqual(await submit(forge(stale.bytes)), { status: 400, error: 'InvalidSignatureError' })
      assert.deepEqual(await submit(forge(skip.bytes)), { status: 400, error: 'InvalidSignatureError' })
    })

    it('a light client checks a balance from a proof and a signed header, and catches a lying peer', async () => {
      const { height, proof } = await a.api.request<{ height: number, stateRoot: string, proof: StateProof }>('GET', `/api/v0/ledger/proof?key=${encodeURIComponent(`account/${b.ready.did}`)}`)
      const block = await a.api.request<{ header: BlockHeader, commit: string[] }>('GET', `/api/v0/ledger/block/${height}`)
      const commit = block.commit.map(c => new Uint8Array(Buffer.from(c, 'base64')))
      const { validators } = await chain(a)
      const value = verifyLightClientProof(block.header, commit, validators as Validator[], `account/${b.ready.did}`, proof)
      assert.ok(value != null)
      const proven = decodeAccountValue(value)
      const { balance: said, height: at } = await b.api.request<Balance & { height: number }>('GET', '/api/v0/ledger/balance/')
      if (at === height) assert.equal(proven.balance, BigInt(said))
      assert.ok(proven.balance > 0n)
      // A peer that lies about the value, the root or the signatures is caught.
      const lie = structuredClone(proof)
      lie.present!.value = lie.present!.value.replace(/.$/, c => (c === '0' ? '1' : '0'))
      assert.throws(() => verifyLightClientProof(block.header, commit, validators as Validator[], `account/${b.ready.did}`, lie), { name: 'InvalidProofError' })
      const otherRoot = { ...block.header, stateRoot: 'ab'.repeat(32) }
      assert.throws(() => verifyLightClientProof(otherRoot, commit, validators as Validator[], `account/${b.ready.did}`, proof), { name: 'InvalidCommitError' })
      assert.throws(() => verifyLightClientProof(block.header, [], validators as Validator[], `account/${b.ready.did}`, proof), { name: 'InvalidCommitError' })
    })

    it('mints and transfers an asset, claims a parcel in its own space (no overlaps), and refuses a space that does not exist', async () => {
      let r = await runCli(['asset', 'mint', '--content', 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', '--name', 'statue', '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      const assetId = (JSON.parse(r.stdout) as { receipt: { created: string } }).receipt.created
      r = await runCli(['asset', 'transfer', assetId, b.ready.did, '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      await waitFor('b owns the asset', async () => {
        const { assets } = await b.api.request<{ assets: Array<{ id: string }> }>('GET', '/api/v0/ledger/assets/')
        return assets.some(x => x.id === assetId)
      }, 30_000)
      r = await runCli(['space', 'create', 'plaza', '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      plaza = (JSON.parse(r.stdout) as { id: string }).id
      // The first claim carries the space's record, which A's peer attaches (A is in its own space).
      r = await runCli(['parcel', 'claim', '--space', plaza, '--x', '0', '--y', '0', '--w', '4', '--h', '4', '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      r = await runCli(['parcel', 'claim', '--space', plaza, '--x', '3', '--y', '3', '--w', '2', '--h', '2', '--data', a.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /ParcelOverlapError/)
      r = await runCli(['parcel', 'claim', '--space', 'notaspace', '--x', '0', '--y', '0', '--w', '1', '--h', '1', '--data', a.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /UnknownSpaceError/)
    })

    it("refuses B's claim in A's space everywhere until A grants it; a price set by A is paid to A", async () => {
      assert.ok(plaza != null, 'the space comes from the test before')
      const space = plaza
      const landOf = async (p: CliPeer): Promise<{ owner: string, price: string, grants: Array<{ id: string }>, parcels: Array<{ owner: string }> }> =>
        JSON.parse((await runCli(['land', space, '--data', p.dataDir, '--json'])).stdout)
      await waitFor('B knows the space from the chain', async () => (await landOf(b)).owner === a.ready.did, 30_000)
      // B, not the owner, with no grant: refused by the chain (the fee is paid), on every peer.
      let r = await runCli(['parcel', 'claim', '--space', plaza, '--x', '0', '--y', '100', '--w', '256', '--h', '156', '--data', b.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /NotGrantedError/)
      const height = (await chain(a)).height
      await waitFor('B is at the height', async () => (await chain(b)).height >= height, 30_000)
      for (const p of [a, b]) assert.deepEqual((await landOf(p)).parcels.map(x => x.owner), [a.ready.did])
      // B cannot grant itself land in A's space.
      r = await runCli(['land', 'grant', '--space', plaza, '--to', b.ready.did, '--x', '0', '--y', '100', '--w', '256', '--h', '156', '--data', b.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /NotSpaceOwnerError/)
      // A grants; B's claim inside the grant is final.
      r = await runCli(['land', 'grant', '--space', plaza, '--to', b.ready.did, '--x', '0', '--y', '100', '--w', '256', '--h', '156', '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      r = await runCli(['parcel', 'claim', '--space', plaza, '--x', '0', '--y', '100', '--w', '256', '--h', '156', '--data', b.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      assert.equal((JSON.parse(r.stdout) as TxStatus).status, 'committed')
      await waitFor('both peers hold B\'s parcel', async () => {
        for (const p of [a, b]) if (!(await landOf(p)).parcels.some(x => x.owner === b.ready.did)) return false
        return true
      }, 30_000)
      // A sells the rest at 2 a cell: B's claim there pays A 2 x 10 x 10.
      r = await runCli(['land', 'price', '--space', plaza, '--price', '2', '--data', a.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      // B's peer claims at most the price it sees, so it waits to see the new one.
      await waitFor('B sees the price', async () => (await landOf(b)).price === '2', 30_000)
      const before = await balance(a)
      r = await runCli(['parcel', 'claim', '--space', plaza, '--x', '50', '--y', '50', '--w', '10', '--h', '10', '--data', b.dataDir, '--json'])
      assert.equal(r.code, 0, r.stderr)
      // A is the devnet's validator, so it also takes the claim's fee of 1.
      await waitFor('A is paid', async () => await balance(a) === before + 201n, 30_000)
    })
    it('takes a batch of transactions in one request and answers for each; refuses an empty, oversized or malformed batch', async () => {
      const { chain: id } = await chain(a)
      const key = faucetKey(id)
      const faucet = faucetDid(id)
      const { nonce } = await a.api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent(faucet)}`)
      const pay = async (n: number, amount = 3n, on = id): Promise<Awaited<ReturnType<typeof signTx>>> =>
        await signTx(key, { chain: on, nonce: n, fee: 1n, kind: 'transfer', to: b.ready.did, amount })

      // All valid: each answered as pending, in order, then committed.
      const valid = await Promise.all([0, 1, 2].map(async i => await pay(nonce + i)))
      let r = await submitBatch(a, { txs: valid.map(t => b64(t.bytes)) })
      assert.equal(r.status, 200, JSON.stringify(r.json))
      assert.deepEqual(r.json.results, valid.map(t => ({ id: t.id, sender: faucet, nonce: t.payload.nonce, kind: 'transfer', status: 'pending' })))
      for (const t of valid) assert.equal((await final(a, t.id)).status, 'committed')

      // Mixed: a result per transaction, in order; the good ones are taken despite the bad ones.
      const good = await pay(nonce + 3)
      const wrongChain = await pay(nonce + 4, 3n, 'another-chain')
      r = await submitBatch(a, { txs: [b64(wrongChain.bytes), b64(good.bytes), 'bm90IGEgdHg=', b64(valid[0].bytes), b64(good.bytes)] })
      assert.equal(r.status, 200, JSON.stringify(r.json))
      const results = r.json.results!
      assert.equal(results.length, 5)
      assert.equal(results[0].error, 'WrongChainError')
      assert.deepEqual(results[1], { id: good.id, sender: faucet, nonce: nonce + 3, kind: 'transfer', status: 'pending' })
      assert.equal(results[2].error, 'MalformedRecordError')
      assert.equal(results[3].error, 'StaleNonceError') // committed already
      assert.equal(results[4].error, 'DuplicateTxError') // the same batch's second copy
      for (const x of [results[0], results[2], results[3], results[4]]) assert.equal(typeof x.message, 'string')
      assert.equal((await final(a, good.id)).status, 'committed')

      // Exactly MAX_API_SUBMIT_BATCH_TXS is taken (here all garbage: one error each).
      r = await submitBatch(a, { txs: Array.from({ length: MAX_API_SUBMIT_BATCH_TXS }, () => 'AA==') })
      assert.equal(r.status, 200)
      assert.equal(r.json.results!.length, MAX_API_SUBMIT_BATCH_TXS)
      assert.ok(r.json.results!.every(x => x.error === 'MalformedRecordError'))

      // Refused whole, before any transaction is looked at: none of these submits `unsent`.
      const unsent = await pay(nonce + 4)
      const refused: unknown[] = [
        {},
        { txs: [] },
        { txs: Array.from({ length: MAX_API_SUBMIT_BATCH_TXS }, () => b64(unsent.bytes)).concat('AA==') },
        { txs: [b64(unsent.bytes), 5] },
        { txs: [b64(unsent.bytes), null] },
        { txs: [b64(unsent.bytes), { tx: b64(unsent.bytes) }] },
        { txs: b64(unsent.bytes) },
        { txs: { 0: b64(unsent.bytes), length: 1 } }
      ]
      for (const body of refused) {
        r = await submitBatch(a, body)
        assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80))
        assert.equal(r.json.error, 'BadRequest', JSON.stringify(body).slice(0, 80))
      }
      assert.equal((await a.api.request<TxStatus>('GET', `/api/v0/ledger/tx/${unsent.id}`)).status, 'unknown')
    })
  })

  describe('four validators', () => {
    const vals: CliPeer[] = []
    let genesisPath: string

    before(async () => {
      const dir = await set.tempDir()
      const dids: string[] = []
      for (let i = 0; i < 4; i++) dids.push((await initIdentity(join(dir, `v${i}`))).did)
      genesisPath = join(dir, 'genesis.json')
      await writeFile(genesisPath, genesisJson(devnetGenesis(dids)))
      vals.push(await set.start({ dataDir: join(dir, 'v0'), extra: ['--genesis', genesisPath] }))
      vals.push(...await Promise.all([1, 2, 3].map(async i => await set.start({ dataDir: join(dir, `v${i}`), bootstrap: [vals[0].addr], extra: ['--genesis', genesisPath] }))))
      await waitFor('all four commit blocks', async () => (await Promise.all(vals.map(chain))).every(s => s.height >= 3), 60_000)
    })

    it('send their proposals and votes straight to each other once linked, not over GossipSub', async () => {
      const received = async (): Promise<Array<{ direct: number, gossip: number }>> =>
        await Promise.all(vals.map(async v => (await v.api.request<{ consensusReceived: { direct: number, gossip: number } }>('GET', '/api/v0/ledger/status')).consensusReceived))
      // Linked once every validator reaches every other directly: from then on nothing comes by gossip.
      let before = await received()
      await waitFor('consensus messages only over direct links', async () => {
        const h0 = (await chain(vals[0])).height
        await waitFor('three more blocks', async () => (await chain(vals[0])).height >= h0 + 3, 30_000)
        const now = await received()
        const quiet = now.every((n, i) => n.gossip === before[i].gossip && n.direct > before[i].direct)
        before = now
        return quiet
      }, 60_000)
      for (const n of before) assert.ok(n.direct > 0)
    })

    it('agree on every block and state root under load, and keep going while one is killed', async () => {
      const status = await chain(vals[0])
      const key = faucetKey(status.chain)
      const receiver = (await generateKeyPair('Ed25519')).publicKey
      void receiver
      let nonce = (await vals[0].api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent((await import('../../src/ledger/genesis.ts')).faucetDid(status.chain))}`)).nonce
      const ids: string[] = []
      for (let i = 0; i < 60; i++) {
        const tx = await signTx(key, { chain: status.chain, nonce: nonce++, fee: 1n, kind: 'transfer', to: vals[i % 4].ready.did, amount: 10n })
        const target = vals[i % 3]
        await target.api.request('POST', '/api/v0/ledger/submit', { tx: Buffer.from(tx.bytes).toString('base64') })
        ids.push(tx.id)
        if (i === 20) await set.kill(vals[3])
      }
      for (const id of ids) assert.equal((await final(vals[0], id)).status, 'committed')
      const heads = await Promise.all(vals.slice(0, 3).map(chain))
      const h = Math.min(...heads.map(s => s.height)) - 1
      for (let height = 1; height <= h; height++) {
        const ref = await blockHashAt(vals[0], height)
        for (const v of vals.slice(1, 3)) assert.deepEqual(await blockHashAt(v, height), ref, `height ${height}`)
      }
      // The killed one comes back and catches up to the same state.
      vals[3] = await set.start({ dataDir: vals[3].dataDir, bootstrap: [vals[0].addr], extra: ['--genesis', genesisPath] })
      const target = (await chain(vals[0])).height
      await waitFor('the restarted validator catches up', async () => (await chain(vals[3])).height >= target, 60_000)
      assert.deepEqual(await blockHashAt(vals[3], target - 1), await blockHashAt(vals[0], target - 1))
    })

    it('of two transactions spending one nonce through two validators, exactly one commits', async () => {
      const status = await chain(vals[0])
      const key = faucetKey(status.chain)
      const faucet = (await import('../../src/ledger/genesis.ts')).faucetDid(status.chain)
      const { nonce } = await vals[0].api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent(faucet)}`)
      const one = await signTx(key, { chain: status.chain, nonce, fee: 1n, kind: 'transfer', to: vals[1].ready.did, amount: 777n })
      const two = await signTx(key, { chain: status.chain, nonce, fee: 1n, kind: 'transfer', to: vals[2].ready.did, amount: 777n })
      await Promise.all([
        vals[0].api.request('POST', '/api/v0/ledger/submit', { tx: Buffer.from(one.bytes).toString('base64') }).catch(() => {}),
        vals[2].api.request('POST', '/api/v0/ledger/submit', { tx: Buffer.from(two.bytes).toString('base64') }).catch(() => {})
      ])
      await waitFor('the faucet nonce moves on', async () => (await vals[1].api.request<Balance>('GET', `/api/v0/ledger/balance/${encodeURIComponent(faucet)}`)).nonce > nonce, 30_000)
      const s1 = await vals[1].api.request<TxStatus>('GET', `/api/v0/ledger/tx/${one.id}`)
      const s2 = await vals[1].api.request<TxStatus>('GET', `/api/v0/ledger/tx/${two.id}`)
      const committed = [s1, s2].filter(s => s.status === 'committed')
      assert.equal(committed.length, 1, JSON.stringify([s1, s2]))
      // Where each was submitted, the loser is refused with its reason, not unknown.
      const loser = s1.status === 'committed' ? { peer: vals[2], id: two.id } : { peer: vals[0], id: one.id }
      const lost = await final(loser.peer, loser.id)
      assert.equal(lost.status, 'rejected', JSON.stringify(lost))
    })
  })
})
