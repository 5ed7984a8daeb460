/**
 * The CARv1 writer and reader against an independent implementation (@ipld/car) in both
 * directions, and every refusal of the reader by name, past each limit. No network, no store.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { CarBlockIterator, CarWriter } from '@ipld/car'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import {
  CarBlockMismatchError, CarTooLargeError, encodeCarBlock, encodeCarHeader, MalformedCarError, MAX_CAR_BLOCKS, MAX_CAR_CID_BYTES,
  MAX_CAR_FRAME_BYTES, MAX_CAR_HEADER_BYTES, MAX_CAR_ROOTS, readCar
} from '../../src/content/car.ts'
import { dagBlocks, entityRange, MAX_WALK_DEPTH, type DagSource } from '../../src/content/car-dag.ts'
import { buildDirectory } from '../../src/content/directory.ts'
import { importFile, type Block } from '../../src/content/unixfs.ts'
import { MAX_BLOCK_BYTES } from '../../src/content/blocks.ts'
import { cat, varint } from '../helpers/bytes.ts'
import { seededBytes } from '../helpers/random.ts'

async function rawBlock (bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

/** A CAR of `blocks` under `roots`, framed by our writer. */
function writeCar (roots: CID[], blocks: Block[]): Uint8Array {
  return cat(encodeCarHeader(roots), ...blocks.flatMap(b => encodeCarBlock(b.cid, b.bytes)))
}

/** `bytes` fed to a reader in pieces of `size` (a stream's chunks never line up with frames). */
function* pieces (bytes: Uint8Array, size = 1000): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

async function readAll (source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options: { maxBlocks?: number } = {}): Promise<{ roots: CID[], blocks: Block[] }> {
  const car = await readCar(source, options)
  const blocks: Block[] = []
  for await (const b of car.blocks()) blocks.push(b)
  return { roots: car.roots, blocks }
}

async function refusal (source: Iterable<Uint8Array>, options: { maxBlocks?: number } = {}): Promise<Error> {
  try {
    await readAll(source, options)
  } catch (err) {
    return err as Error
  }
  assert.fail('the CAR was read')
}

/** The blocks of a file of `size` seeded bytes, in import order, and its root. */
async function fileBlocks (size: number, seed: number): Promise<{ root: CID, blocks: Block[] }> {
  const blocks: Block[] = []
  const result = await importFile([seededBytes(size, seed)], async b => { blocks.push(b) })
  return { root: result.cid, blocks }
}

describe('CARv1 format', () => {
  it('our CAR reads block by block in @ipld/car, every block matching its CID', async () => {
    const { root, blocks } = await fileBlocks(3 * 1024 * 1024 + 17, 1)
    const bytes = writeCar([root], blocks)
    const reader = await CarBlockIterator.fromIterable((async function * () { yield * pieces(bytes, 4096) })())
    assert.deepEqual((await reader.getRoots()).map(String), [root.toString()])
    let n = 0
    for await (const { cid, bytes: b } of reader) {
      const digest = await sha256.digest(b)
      assert.deepEqual(digest.digest, cid.multihash.digest, `block ${cid.toString()} matches its CID`)
      assert.equal(cid.toString(), blocks[n].cid.toString())
      n++
    }
    assert.equal(n, blocks.length)
  })

  it("reads @ipld/car's CAR back: the same roots and blocks", async () => {
    const { root, blocks } = await fileBlocks(2 * 1024 * 1024 + 5, 2)
    const { writer, out } = CarWriter.create([root])
    const chunks: Uint8Array[] = []
    const collected = (async () => { for await (const c of out) chunks.push(c) })()
    for (const b of blocks) await writer.put(b)
    await writer.close()
    await collected
    const read = await readAll(pieces(cat(...chunks), 777))
    assert.deepEqual(read.roots.map(String), [root.toString()])
    assert.deepEqual(read.blocks.map(b => b.cid.toString()), blocks.map(b => b.cid.toString()))
  })

  it('refuses a truncated CAR (inside a frame, inside the header) with MalformedCarError', async () => {
    const { root, blocks } = await fileBlocks(1024 * 1024 + 100, 3)
    const bytes = writeCar([root], blocks)
    assert.equal((await refusal(pieces(bytes.subarray(0, bytes.length - 10)))).name, 'MalformedCarError')
    assert.equal((await refusal(pieces(bytes.subarray(0, 20)))).name, 'MalformedCarError')
    assert.equal((await refusal([new Uint8Array([0x80])])).name, 'MalformedCarError')
  })

  it('refuses bad headers with MalformedCarError', async () => {
    const { root } = await fileBlocks(10, 4)
    const header = (value: unknown): Uint8Array => { const body = dagCbor.encode(value); return cat(varint(body.length), body) }
    for (const [what, bytes] of [
      ['not DAG-CBOR', cat(varint(3), new Uint8Array([0xff, 0xff, 0xff]))],
      ['version 2', header({ version: 2, roots: [root] })],
      ['no roots', header({ version: 1, roots: [] })],
      ['a root that is not a CID', header({ version: 1, roots: ['x'] })],
      ['not a map', header([1, [root]])],
      ['an empty header', varint(0)],
      ['an unknown field', header({ version: 1, roots: [root], extra: 1 })]
    ] as Array<[string, Uint8Array]>) {
      const err = await refusal([bytes])
      assert.equal(err.name, 'MalformedCarError', what)
      assert.ok(err instanceof MalformedCarError)
    }
  })

  it(`refuses past MAX_CAR_HEADER_BYTES (${MAX_CAR_HEADER_BYTES}) and MAX_CAR_ROOTS (${MAX_CAR_ROOTS}) with CarTooLargeError`, async () => {
    const { root } = await fileBlocks(10, 5)
    const pad = dagCbor.encode({ version: 1, roots: [root] })
    // Declared one byte over: refused before any of it is read.
    assert.equal((await refusal([varint(MAX_CAR_HEADER_BYTES + 1), pad])).name, 'CarTooLargeError')
    const roots = Array.from({ length: MAX_CAR_ROOTS + 1 }, () => root)
    assert.equal((await refusal([encodeCarHeader(roots)])).name, 'CarTooLargeError')
    // At the limits it reads.
    assert.equal((await readAll([encodeCarHeader(roots.slice(1))])).roots.length, MAX_CAR_ROOTS)
  })

  it(`refuses a frame past MAX_CAR_FRAME_BYTES and a block past MAX_BLOCK_BYTES with CarTooLargeError`, async () => {
    const { root } = await fileBlocks(10, 6)
    const err = await refusal([encodeCarHeader([root]), varint(MAX_CAR_FRAME_BYTES + 1)])
    assert.equal(err.name, 'CarTooLargeError')
    const big = await rawBlock(seededBytes(MAX_BLOCK_BYTES + 1, 7))
    assert.equal((await refusal(pieces(writeCar([root], [big]), 65536))).name, 'CarTooLargeError')
  })

  it(`refuses a CID past MAX_CAR_CID_BYTES (${MAX_CAR_CID_BYTES}) with MalformedCarError`, async () => {
    const { root } = await fileBlocks(10, 11)
    // An identity CID is as long as its bytes: one that ends exactly at the limit, one a byte past it.
    const cidOf = (total: number): CID => {
      for (let n = total; n > 0; n--) {
        const cid = CID.createV1(raw.code, identity.digest(new Uint8Array(n)))
        if (cid.bytes.length === total) return cid
      }
      throw new Error('no such CID')
    }
    const frame = (cid: CID): Uint8Array => cat(...encodeCarBlock(cid, new Uint8Array(4)))
    const at = await refusal([encodeCarHeader([root]), frame(cidOf(MAX_CAR_CID_BYTES))])
    assert.notEqual(at.name, 'MalformedCarError', 'a CID at the limit is read (then refused as an unsupported hash)')
    assert.equal(at.name, 'UnsupportedContentError')
    assert.equal((await refusal([encodeCarHeader([root]), frame(cidOf(MAX_CAR_CID_BYTES + 1))])).name, 'MalformedCarError')
  })

  it('refuses a block whose bytes do not match its CID with CarBlockMismatchError, after yielding the good ones before it', async () => {
    const { root, blocks } = await fileBlocks(2 * 1024 * 1024 + 3, 8)
    const bad = blocks.map(b => ({ ...b }))
    bad[1] = { cid: bad[1].cid, bytes: bad[1].bytes.slice() }
    bad[1].bytes[100] ^= 1
    const car = await readCar(pieces(writeCar([root], bad), 5000))
    const seen: string[] = []
    await assert.rejects(async () => { for await (const b of car.blocks()) seen.push(b.cid.toString()) }, (err: Error) => err instanceof CarBlockMismatchError && err.name === 'CarBlockMismatchError')
    assert.deepEqual(seen, [blocks[0].cid.toString()])
  })

  it('refuses the block past its block limit (MAX_CAR_BLOCKS by default) with CarTooLargeError', async () => {
    // MAX_CAR_BLOCKS is over a million frames, minutes of hashing on a shared machine: the same
    // check is driven past a limit of 1000 given to the reader.
    assert.ok(MAX_CAR_BLOCKS >= (1 << 20), 'a file of the largest size we read fits')
    const one = await rawBlock(new Uint8Array([1]))
    const frames = Array.from({ length: 1001 }, () => cat(...encodeCarBlock(one.cid, one.bytes)))
    const car = await readCar(pieces(cat(encodeCarHeader([one.cid]), ...frames), 333), { maxBlocks: 1000 })
    let n = 0
    await assert.rejects(async () => { for await (const _ of car.blocks()) n++ }, (err: Error) => err.name === 'CarTooLargeError')
    assert.equal(n, 1000)
    assert.equal((await readAll(pieces(cat(encodeCarHeader([one.cid]), ...frames.slice(1)), 333), { maxBlocks: 1000 })).blocks.length, 1000)
  })

  it('entity-bytes ranges: inclusive, negative from the end, * to the end, clamped to the file', () => {
    assert.deepEqual(entityRange({ from: 0, to: '*' }, 100), { start: 0, end: 100 })
    assert.deepEqual(entityRange({ from: 10, to: 19 }, 100), { start: 10, end: 20 })
    assert.deepEqual(entityRange({ from: -10, to: '*' }, 100), { start: 90, end: 100 })
    assert.deepEqual(entityRange({ from: 5, to: -10 }, 100), { start: 5, end: 91 })
    assert.deepEqual(entityRange({ from: 90, to: 1000 }, 100), { start: 90, end: 100 })
    assert.deepEqual(entityRange({ from: 200, to: '*' }, 100), { start: 100, end: 100 })
  })

  it('dagBlocks: depth-first, each block once, entity-bytes takes only the leaves it needs', async () => {
    // Four leaves, two of them the same bytes.
    const chunk = seededBytes(1024 * 1024, 9)
    const other = seededBytes(1024 * 1024, 10)
    const blocks = new Map<string, Uint8Array>()
    const result = await importFile([chunk, other, chunk, other.subarray(0, 5)], async b => { blocks.set(b.cid.toString(), b.bytes) })
    const get = async (cid: CID): Promise<Uint8Array> => blocks.get(cid.toString()) as Uint8Array
    const source: DagSource = { get, file: () => ({ get, release: () => {} }) }
    const all: string[] = []
    for await (const b of dagBlocks(source, result.cid)) all.push(b.cid.toString())
    assert.equal(all[0], result.cid.toString())
    assert.equal(all.length, 4, 'root and three distinct leaves (the repeated one once)')
    const withDups: string[] = []
    for await (const b of dagBlocks(source, result.cid, { dups: true })) withDups.push(b.cid.toString())
    assert.equal(withDups.length, 5)
    const ranged: string[] = []
    for await (const b of dagBlocks(source, result.cid, { scope: 'entity', entityBytes: { from: 1024 * 1024, to: 1024 * 1024 + 10 } })) ranged.push(b.cid.toString())
    assert.equal(ranged.length, 2, 'the root and the second leaf')
    const block: string[] = []
    for await (const b of dagBlocks(source, result.cid, { scope: 'block' })) block.push(b.cid.toString())
    assert.deepEqual(block, [result.cid.toString()])
  })

  it(`dagBlocks follows directories MAX_WALK_DEPTH (${MAX_WALK_DEPTH}) levels below the root, and refuses one more with UnsupportedContentError`, async () => {
    const blocks = new Map<string, Uint8Array>()
    const put = async (b: Block): Promise<void> => { blocks.set(b.cid.toString(), b.bytes) }
    const leaf = await rawBlock(new Uint8Array([42]))
    await put(leaf)
    // chain[k]: the directory with k levels of directories and then the leaf below it.
    const chain: CID[] = [leaf.cid]
    for (let k = 0; k <= MAX_WALK_DEPTH; k++) chain.push((await buildDirectory([{ name: 'x', cid: chain[k], size: 1 }], put)).cid)
    const get = async (cid: CID): Promise<Uint8Array> => blocks.get(cid.toString()) as Uint8Array
    const source: DagSource = { get, file: () => ({ get, release: () => {} }) }
    const walk = async (root: CID): Promise<number> => { let n = 0; for await (const _ of dagBlocks(source, root)) n++; return n }
    assert.equal(await walk(chain[MAX_WALK_DEPTH]), MAX_WALK_DEPTH + 1, 'the leaf is MAX_WALK_DEPTH levels below the root')
    await assert.rejects(walk(chain[MAX_WALK_DEPTH + 1]), (err: Error) => err.name === 'UnsupportedContentError')
  })
})
