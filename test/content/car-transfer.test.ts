/**
 * CAR files between real peers (`peerverse start` processes on 127.0.0.1): a directory added on
 * one peer comes out of its trustless gateway and out of `peerverse export` as CARs that an
 * independent reader (@ipld/car) checks block by block, whole; `peerverse import` of it on a peer
 * with no link to the first then serves the same bytes. Malformed CARs are refused by name and
 * leave no block behind.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeCarBlock, encodeCarHeader, MAX_CAR_FRAME_BYTES } from '../../src/content/car.ts'
import { importFile, type Block } from '../../src/content/unixfs.ts'
import { cat, varint } from '../helpers/bytes.ts'
import { checkCar } from '../helpers/car.ts'
import { PeerSet, runCli, type CliPeer } from '../helpers/cli-peer.ts'
import { seededBytes } from '../helpers/random.ts'

async function storeBlocks (peer: CliPeer): Promise<number> {
  return (await peer.api.request<{ blocks: number }>('GET', '/api/v0/content/store')).blocks
}

describe('CAR files between peers', { timeout: 300_000 }, () => {
  const peers = new PeerSet()
  let a: CliPeer
  let b: CliPeer
  let dir: string
  let root: string
  let carFile: string
  const model = seededBytes(3 * 1024 * 1024 + 7, 20)
  const texture = seededBytes(500 * 1024, 21)

  before(async () => {
    // No bootstrap: each is a network of its own, with no link to the other.
    ;[a, b] = await Promise.all([peers.start(), peers.start()])
    dir = await peers.tempDir()
    await mkdir(join(dir, 'world', 'tex'), { recursive: true })
    await writeFile(join(dir, 'world', 'model.bin'), model)
    await writeFile(join(dir, 'world', 'tex', 'a.bin'), texture)
    await writeFile(join(dir, 'world', 'readme.txt'), 'a small world\n')
    const added = await runCli(['add', join(dir, 'world'), '--data', a.dataDir])
    assert.equal(added.code, 0, added.stderr)
    root = added.stdout.trim()
    carFile = join(dir, 'world.car')
  })
  after(async () => { await peers.cleanup() })

  it("the gateway's CAR passes an independent reader's block-by-block check, the whole DAG present", async () => {
    const res = await fetch(`${a.api.url}/ipfs/${root}?format=car`, { headers: { authorization: `Bearer ${a.api.token}`, accept: 'application/vnd.ipld.car' } })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'application/vnd.ipld.car; version=1; order=dfs; dups=n')
    const blocks = await checkCar(new Uint8Array(await res.arrayBuffer()), root)
    // Root directory, tex directory, model (root + 4 leaves), a.bin, readme.txt.
    assert.equal(blocks.size, 9)
  })

  it("`peerverse export` writes a CAR that passes the same check, byte for byte the gateway's", async () => {
    const out = await runCli(['export', root, '-o', carFile, '--data', a.dataDir])
    assert.equal(out.code, 0, out.stderr)
    const bytes = new Uint8Array(await readFile(carFile))
    await checkCar(bytes, root)
    const res = await fetch(`${a.api.url}/ipfs/${root}?format=car`, { headers: { authorization: `Bearer ${a.api.token}` } })
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes)
  })

  it('`peerverse import` on a peer with no link to the first pins the root and serves the same bytes', async () => {
    assert.equal((await b.api.request<{ peers: unknown[] }>('GET', '/api/v0/peers')).peers.length, 0)
    const out = await runCli(['import', carFile, '--data', b.dataDir])
    assert.equal(out.code, 0, out.stderr)
    assert.equal(out.stdout.trim(), root)
    const pins = await b.api.request<{ pins: Array<{ cid: string }> }>('GET', '/api/v0/content/pins')
    assert.ok(pins.pins.some(p => p.cid === root))
    for (const [path, want] of [['model.bin', model], ['tex/a.bin', texture]] as const) {
      const res = await b.api.raw('GET', `/content/${root}/${path}`)
      assert.equal(res.status, 200)
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), want, path)
    }
  })

  it('refuses malformed CARs by name (truncated, cut at a block, bad header, a lying block, an oversize frame) and keeps none of their blocks', async () => {
    // A file B does not hold, so every block a refused import wrote would show in the count.
    const blocks: Block[] = []
    const fresh = await importFile([seededBytes(2 * 1024 * 1024 + 3, 30)], async blk => { blocks.push(blk) })
    // Import order is leaves first, root last; a CAR is root first.
    const ordered = [blocks[blocks.length - 1], ...blocks.slice(0, -1)]
    const frames = (list: Block[]): Uint8Array[] => list.flatMap(blk => encodeCarBlock(blk.cid, blk.bytes))
    const good = cat(encodeCarHeader([fresh.cid]), ...frames(ordered))
    const lying = ordered.map(blk => ({ ...blk }))
    lying[2] = { cid: lying[2].cid, bytes: lying[2].bytes.slice() }
    lying[2].bytes[7] ^= 0xff
    const cases: Array<[string, Uint8Array, string]> = [
      ['truncated', good.subarray(0, good.length - 100), 'MalformedCarError'],
      ['cut at a block boundary', cat(encodeCarHeader([fresh.cid]), ...frames(ordered.slice(0, -1))), 'CarIncompleteError'],
      ['bad header', cat(varint(4), new Uint8Array([0xa1, 0x61, 0x78, 0x01])), 'MalformedCarError'],
      ['a block that does not match its CID', cat(encodeCarHeader([fresh.cid]), ...frames(lying)), 'CarBlockMismatchError'],
      ['an oversize frame', cat(encodeCarHeader([fresh.cid]), ...frames(ordered.slice(0, 2)), varint(MAX_CAR_FRAME_BYTES + 1), new Uint8Array(64)), 'CarTooLargeError']
    ]
    const before = await storeBlocks(b)
    for (const [what, bytes, name] of cases) {
      const file = join(dir, `bad-${name}.car`)
      await writeFile(file, bytes)
      const out = await runCli(['import', file, '--data', b.dataDir])
      assert.equal(out.code, 1, what)
      assert.match(out.stderr, new RegExp(name), what)
      assert.equal(await storeBlocks(b), before, `${what}: no block kept`)
    }
    // The API answers the same refusal as JSON with a status.
    const res = await b.api.raw('POST', '/api/v0/content/import-car', { body: Buffer.from(cat(encodeCarHeader([fresh.cid]), ...frames(lying))) })
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as { error: string }).error, 'CarBlockMismatchError')
    const big = await b.api.raw('POST', '/api/v0/content/import-car', { body: Buffer.from(cat(encodeCarHeader([fresh.cid]), varint(MAX_CAR_FRAME_BYTES + 1))) })
    assert.equal(big.status, 413)
    assert.equal(await storeBlocks(b), before)
    // And the good one goes in whole.
    const file = join(dir, 'fresh.car')
    await writeFile(file, good)
    const ok = await runCli(['import', file, '--data', b.dataDir, '--json'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.deepEqual((JSON.parse(ok.stdout) as { roots: string[] }).roots, [fresh.cid.toString()])
    assert.equal(await storeBlocks(b), before + blocks.length)
  })
})

