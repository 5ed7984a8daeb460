/**
 * A store sublevel per chain, on a real LevelDB on disk: a data dir made before chains had
 * sublevels keeps its one chain where it is (the `ledger` sublevel, claimed by the chain of its
 * first block), every other chain gets its own, and the choice survives a reopen; and a fresh peer
 * whose only bootstrap is unreachable gives up with a JoinError rather than starting a devnet.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from '../../src/store/store.ts'
import { ChainStore } from '../../src/ledger/chain.ts'
import { chainSublevel, CHAINS_SUBLEVEL, FIRST_CHAIN_SUBLEVEL } from '../../src/ledger/chain-sublevel.ts'
import type { Block } from '../../src/ledger/state.ts'
import { createNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

const dirs: string[] = []
async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'peerverse-chain-store-'))
  dirs.push(d)
  return d
}

function block (chain: string): Block {
  return { header: { chain, height: 1, time: 1, prev: null, proposer: 'did:key:z', txRoot: 'r', stateRoot: 's', validatorsHash: 'v' }, txs: [] }
}

/** Opens the store and picks the sublevel of `chain`, memoized as the node does. */
async function pick (dir: string, chain: string): Promise<{ store: Store, names: string[], sub: ReturnType<Store['sublevel']> }> {
  const store = await Store.open(dir, { ballastBytes: 0 })
  const taken = new Map<string, ReturnType<Store['sublevel']>>()
  const sublevel = (name: string): ReturnType<Store['sublevel']> => {
    let s = taken.get(name)
    if (s == null) { s = store.sublevel(name); taken.set(name, s) }
    return s
  }
  const sub = await chainSublevel(chain, sublevel(CHAINS_SUBLEVEL), sublevel)
  return { store, names: [...taken.keys()], sub }
}

describe('a store sublevel per chain', { timeout: 120_000 }, () => {
  after(async () => { await Promise.all(dirs.map(async d => rm(d, { recursive: true, force: true }))) })

  it('keeps an old data dir\'s chain in the ledger sublevel and gives another chain its own', async () => {
    const dir = await tempDir()
    // A data dir from before: chain "old-chain" in the `ledger` sublevel, no record.
    const store = await Store.open(dir, { ballastBytes: 0 })
    await new ChainStore(store.sublevel(FIRST_CHAIN_SUBLEVEL)).putBlock({ block: block('old-chain'), commit: [] }, [])
    await store.close()

    // Another chain opened first does not read the old one's blocks.
    let got = await pick(dir, 'new-chain')
    assert.equal(await new ChainStore(got.sub).getBlock(1), undefined)
    await got.sub.put('mark', new Uint8Array([1]))
    await got.store.close()

    got = await pick(dir, 'old-chain')
    assert.equal((await new ChainStore(got.sub).getBlock(1))?.block.header.chain, 'old-chain')
    assert.deepEqual(got.names.sort(), [FIRST_CHAIN_SUBLEVEL, CHAINS_SUBLEVEL])
    await got.store.close()

    got = await pick(dir, 'new-chain')
    assert.deepEqual([...(await got.sub.get('mark')) ?? []], [1], 'the new chain finds its own data again')
    assert.equal(await new ChainStore(got.sub).getBlock(1), undefined)
    await got.store.close()
  })

  it('gives a fresh data dir\'s first chain the ledger sublevel', async () => {
    const dir = await tempDir()
    let got = await pick(dir, 'first')
    assert.ok(got.names.includes(FIRST_CHAIN_SUBLEVEL))
    await got.sub.put('x', new Uint8Array([2]))
    await got.store.close()
    got = await pick(dir, 'second')
    assert.equal(await got.sub.get('x'), undefined)
    await got.store.close()
  })

  it('a fresh peer whose only bootstrap is unreachable gives up with a JoinError, and starts no devnet', async () => {
    const dir = await tempDir()
    const dead = `/ip4/127.0.0.1/tcp/1/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()}`
    const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, relay: { server: false }, bootstrap: [dead] }), { joinTimeoutMs: 3_000 })
    await assert.rejects(node.start(), (err: Error) => {
      assert.equal(err.name, 'JoinError')
      assert.ok(err.message.includes(dead), err.message)
      return true
    })
    assert.equal(node.started, false)
    assert.ok(!(await readdir(dir)).includes('genesis.json'))
  })
})
