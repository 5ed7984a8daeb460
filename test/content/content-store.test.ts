/**
 * The content layer without a network: the block store over a real LevelDB and real files, the
 * swarm wire format (fixtures, every rejection by name, fast-check properties) and the content
 * service's add / cat / pin / gc on a node that is never started.
 * Randomness is seeded (mulberry32 for data, fast-check seed 42), so a failure replays.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { BLOCKS_DIR, Blockstore, GC_WATERMARK, MAX_BLOCK_BYTES } from '../../src/content/blockstore.ts'
import {
  bitfieldBytes, decodeMessage, encodeMessage, MAX_BITFIELD_LEAVES, MAX_FRAME_BYTES, SwarmProtocolError,
  type HolderStatus, type SwarmMessage
} from '../../src/content/swarm-wire.ts'
import { CHUNK_SIZE, rawBlock, type Block } from '../../src/content/unixfs.ts'
import { createNode, type PeerverseNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { Store } from '../../src/store/store.ts'
import { seededBytes } from '../helpers/random.ts'
import { cat, fromHex, toHex, utf8, varint } from '../helpers/bytes.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'

// ---------------------------------------------------------------- helpers


/** A real Store and a Blockstore over its `content` sublevel, closed when the test ends. */
async function openBlocks (dir: string, maxBytes: number, defer: (fn: () => Promise<unknown>) => void): Promise<{ store: Store, blocks: Blockstore }> {
  const store = await Store.open(dir)
  defer(async () => store.close())
  const blocks = await Blockstore.open(store.sublevel('content'), dir, maxBytes)
  return { store, blocks }
}

const blockPath = (dir: string, cid: CID): string => join(dir, BLOCKS_DIR, cid.toString().slice(-2), cid.toString())

/** Byte-for-byte equality (store reads come back as Buffers). */
function assertSameBytes (actual: Uint8Array, expected: Uint8Array, message?: string): void {
  assert.equal(actual.length, expected.length, message)
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), message ?? 'bytes differ')
}

async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false)
}

/** Every file name under DIR/blocks, shard by shard. */
async function filesOnDisk (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const shard of await readdir(join(dir, BLOCKS_DIR))) out.push(...await readdir(join(dir, BLOCKS_DIR, shard)))
  return out.sort()
}

const GiB = 1024 * 1024 * 1024

// ---------------------------------------------------------------- block store

describe('block store over a real LevelDB', () => {
  it('put then get returns the same bytes; size, count and has() follow', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const { blocks } = await openBlocks(dir, GiB, defer)
    const a = await rawBlock(seededBytes(1000, 1))
    const b = await rawBlock(seededBytes(CHUNK_SIZE, 2))
    assert.equal(blocks.has(a.cid), false)
    await blocks.put(a.cid, a.bytes)
    await blocks.put(b.cid, b.bytes, { durable: true })
    assertSameBytes(await blocks.get(a.cid), a.bytes)
    assertSameBytes(await blocks.get(b.cid), b.bytes)
    assert.equal(blocks.has(a.cid), true)
    assert.equal(blocks.sizeOf(b.cid), CHUNK_SIZE)
    assert.equal(blocks.blockCount, 2)
    assert.equal(blocks.usedBytes, 1000 + CHUNK_SIZE)
    // Storing a held block again is a no-op.
    await blocks.put(a.cid, a.bytes)
    assert.equal(blocks.blockCount, 2)
    assert.equal(blocks.usedBytes, 1000 + CHUNK_SIZE)
    assert.deepEqual([...blocks.cids()].map(c => c.toString()).sort(), [a.cid.toString(), b.cid.toString()].sort())
    assert.deepEqual(await filesOnDisk(dir), [a.cid.toString(), b.cid.toString()].sort())
    await assert.rejects(blocks.get((await rawBlock(utf8('absent'))).cid), { name: 'BlockNotFoundError' })
  })

  it('refuses bytes that do not match the CID and stores nothing', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const { blocks } = await openBlocks(dir, GiB, defer)
    const good = await rawBlock(seededBytes(4096, 3))
    const wrong = good.bytes.slice()
    wrong[100] ^= 1
    await assert.rejects(blocks.put(good.cid, wrong), { name: 'BlockVerificationError' })
    // A hash we do not verify is refused too, by its own name.
    const other = CID.createV1(raw.code, await sha512.digest(good.bytes))
    await assert.rejects(blocks.put(other, good.bytes), { name: 'UnsupportedContentError' })
    assert.equal(blocks.has(good.cid), false)
    assert.equal(blocks.blockCount, 0)
    assert.equal(blocks.usedBytes, 0)
    assert.deepEqual(await filesOnDisk(dir), [])
    await assert.rejects(blocks.get(good.cid), { name: 'BlockNotFoundError' })
  })

  it('takes a block of exactly MAX_BLOCK_BYTES and refuses one byte more', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const { blocks } = await openBlocks(dir, GiB, defer)
    const atLimit = await rawBlock(seededBytes(MAX_BLOCK_BYTES, 4))
    const over = await rawBlock(seededBytes(MAX_BLOCK_BYTES + 1, 5))
    await blocks.put(atLimit.cid, atLimit.bytes)
    assert.equal(blocks.sizeOf(atLimit.cid), MAX_BLOCK_BYTES)
    await assert.rejects(blocks.put(over.cid, over.bytes), { name: 'BlockTooLargeError' })
    // Refused before anything else, even when the caller vouches for the bytes.
    await assert.rejects(blocks.put(over.cid, over.bytes, { verified: true }), { name: 'BlockTooLargeError' })
    assert.equal(blocks.has(over.cid), false)
    assert.equal(blocks.blockCount, 1)
  })

  it('treats a damaged or missing file as absent and forgets the block, also across reopen', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const { store, blocks } = await openBlocks(dir, GiB, defer)
    const damaged = await rawBlock(seededBytes(8192, 6))
    const missing = await rawBlock(seededBytes(8192, 7))
    const intact = await rawBlock(seededBytes(8192, 8))
    for (const b of [damaged, missing, intact]) await blocks.put(b.cid, b.bytes)
    const bytes = damaged.bytes.slice()
    bytes[0] ^= 0xff
    await writeFile(blockPath(dir, damaged.cid), bytes)
    await rm(blockPath(dir, missing.cid))
    await assert.rejects(blocks.get(damaged.cid), { name: 'BlockNotFoundError', message: /damaged/ })
    await assert.rejects(blocks.get(missing.cid), { name: 'BlockNotFoundError' })
    assert.equal(blocks.has(damaged.cid), false)
    assert.equal(blocks.has(missing.cid), false)
    assert.equal(await exists(blockPath(dir, damaged.cid)), false, 'the damaged file is deleted')
    assert.equal(blocks.blockCount, 1)
    assert.equal(blocks.usedBytes, 8192)
    assertSameBytes(await blocks.get(intact.cid), intact.bytes)
    await store.close()
    const again = await openBlocks(dir, GiB, defer)
    assert.equal(again.blocks.has(damaged.cid), false)
    assert.equal(again.blocks.has(missing.cid), false)
    assert.equal(again.blocks.blockCount, 1)
    // The block can be stored again once good bytes come.
    await again.blocks.put(damaged.cid, damaged.bytes)
    assertSameBytes(await again.blocks.get(damaged.cid), damaged.bytes)
  })

  it('keeps its index, pins, downloads and provided roots across reopen', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const first = await openBlocks(dir, GiB, defer)
    const made: Block[] = []
    for (let i = 0; i < 5; i++) made.push(await rawBlock(seededBytes(1000 + i * 777, 10 + i)))
    for (const b of made) await first.blocks.put(b.cid, b.bytes)
    const used = first.blocks.usedBytes
    assert.equal(used, made.reduce((n, b) => n + b.bytes.length, 0))
    await first.blocks.pin({ cid: made[0].cid.toString(), size: 1000, name: 'zero', pinnedAt: 1 })
    await first.blocks.pin({ cid: made[1].cid.toString(), size: 1777, pinnedAt: 2 })
    await first.blocks.markDownload({ cid: made[2].cid.toString(), attempts: 2, since: 1234, found: true })
    await first.blocks.markProvided(made[3].cid)
    await first.store.close()

    const second = await openBlocks(dir, GiB, defer)
    assert.equal(second.blocks.usedBytes, used)
    assert.equal(second.blocks.blockCount, made.length)
    for (const b of made) assertSameBytes(await second.blocks.get(b.cid), b.bytes)
    const pins = (await second.blocks.pins()).sort((x, y) => x.pinnedAt - y.pinnedAt)
    assert.deepEqual(pins, [
      { cid: made[0].cid.toString(), size: 1000, name: 'zero', pinnedAt: 1 },
      { cid: made[1].cid.toString(), size: 1777, pinnedAt: 2 }
    ])
    assert.deepEqual(await second.blocks.downloads(), [{ cid: made[2].cid.toString(), attempts: 2, since: 1234, found: true }])
    assert.deepEqual((await second.blocks.providedRoots()).map(String), [made[3].cid.toString()])
    assert.equal(await second.blocks.unpin(made[1].cid), true)
    assert.equal(await second.blocks.unpin(made[1].cid), false)
    assert.equal(await second.blocks.getPin(made[1].cid), undefined)
    await second.blocks.clearDownload(made[2].cid)
    await second.store.close()

    const third = await openBlocks(dir, GiB, defer)
    assert.deepEqual((await third.blocks.pins()).map(p => p.cid), [made[0].cid.toString()])
    assert.equal((await third.blocks.getPin(made[0].cid))?.name, 'zero')
    assert.deepEqual(await third.blocks.downloads(), [])
  })

  it('enforces maxBytes: up to the limit is taken, past it StoreFullError; pressure is asked first', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const MAX = 10_000
    const watermark = Math.floor(MAX * GC_WATERMARK)
    const { blocks } = await openBlocks(dir, MAX, defer)
    const events: string[] = []
    const a = await rawBlock(seededBytes(watermark - 1000, 20))
    const b = await rawBlock(seededBytes(1000, 21))
    const c = await rawBlock(seededBytes(MAX - watermark, 22))
    const d = await rawBlock(seededBytes(1, 23))
    blocks.onPressure = async () => { events.push(`pressure at ${blocks.usedBytes}`) }
    await blocks.put(a.cid, a.bytes)
    await blocks.put(b.cid, b.bytes) // exactly at the watermark: no pressure yet
    assert.equal(events.length, 0)
    await blocks.put(c.cid, c.bytes) // past the watermark, exactly at the limit: pressure, then stored
    assert.deepEqual(events, [`pressure at ${watermark}`])
    assert.equal(blocks.usedBytes, MAX)
    await assert.rejects(blocks.put(d.cid, d.bytes).catch(err => { events.push((err as Error).name); throw err }), { name: 'StoreFullError' })
    assert.deepEqual(events, [`pressure at ${watermark}`, `pressure at ${MAX}`, 'StoreFullError'])
    assert.equal(blocks.has(d.cid), false)
    assert.equal(blocks.usedBytes, MAX)

    // Pressure that frees room lets the put through.
    blocks.onPressure = async () => { await blocks.sweep(new Set([b.cid.toString()])) }
    await blocks.put(d.cid, d.bytes)
    assert.equal(blocks.has(d.cid), true)
    assert.equal(blocks.has(a.cid), false)
    assert.equal(blocks.usedBytes, b.bytes.length + 1)

    // Without a pressure handler the limit is simply the limit.
    blocks.onPressure = undefined
    const e = await rawBlock(seededBytes(MAX - blocks.usedBytes, 24))
    const f = await rawBlock(seededBytes(1, 25))
    await blocks.put(e.cid, e.bytes)
    await assert.rejects(blocks.put(f.cid, f.bytes), { name: 'StoreFullError' })
  })

  it('sweep keeps exactly the blocks in keep', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const { blocks } = await openBlocks(dir, GiB, defer)
    const made: Block[] = []
    for (let i = 0; i < 6; i++) made.push(await rawBlock(seededBytes(500 + i, 30 + i)))
    for (const b of made) await blocks.put(b.cid, b.bytes)
    const keep = new Set([made[1], made[4]].map(b => b.cid.toString()))
    // A kept CID that is not held is harmless.
    keep.add((await rawBlock(utf8('not held'))).cid.toString())
    const result = await blocks.sweep(keep)
    const gone = made.filter(b => !keep.has(b.cid.toString()))
    assert.deepEqual(result, { removed: 4, freed: gone.reduce((n, b) => n + b.bytes.length, 0), strays: 0, indexPending: 0 })
    for (const b of made) assert.equal(blocks.has(b.cid), keep.has(b.cid.toString()), b.cid.toString())
    assert.equal(blocks.blockCount, 2)
    assert.equal(blocks.usedBytes, made[1].bytes.length + made[4].bytes.length)
    assert.deepEqual(await filesOnDisk(dir), [made[1].cid.toString(), made[4].cid.toString()].sort())
    assert.deepEqual(await blocks.sweep(new Set()), { removed: 2, freed: made[1].bytes.length + made[4].bytes.length, strays: 0, indexPending: 0 })
    assert.equal(blocks.blockCount, 0)
  })

  it('repair removes .tmp leftovers of a crash and nothing else', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'content')
    const { blocks } = await openBlocks(dir, GiB, defer)
    const b = await rawBlock(seededBytes(2048, 40))
    await blocks.put(b.cid, b.bytes)
    const shard = join(dir, BLOCKS_DIR, b.cid.toString().slice(-2))
    const leftovers = [join(shard, `${b.cid.toString()}.0123456789ab.tmp`), join(dir, BLOCKS_DIR, 'zz', 'bafkreizz.a1b2c3d4e5f6.tmp')]
    await mkdir(join(dir, BLOCKS_DIR, 'zz'))
    for (const p of leftovers) await writeFile(p, seededBytes(100, 41))
    const bystander = join(dir, BLOCKS_DIR, 'zz', 'notes.txt')
    await writeFile(bystander, utf8('not a temporary file'))
    assert.deepEqual(await blocks.repair(), { removed: 0, freed: 200, strays: 2, indexPending: 0 })
    for (const p of leftovers) assert.equal(await exists(p), false, p)
    assert.equal(await exists(bystander), true)
    assertSameBytes(await blocks.get(b.cid), b.bytes)
  })
})

// ---------------------------------------------------------------- swarm wire

interface VectorMessage {
  type: SwarmMessage['type']
  root?: string
  cid?: string
  bytes?: string
  index?: number
  status?: HolderStatus
  leaves?: number
  bits?: string
}

const vectors = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/swarm-wire.json'), 'utf8')) as { vectors: Array<{ name: string, message: VectorMessage, hex: string }> }

function fromVector (m: VectorMessage): SwarmMessage {
  switch (m.type) {
    case 'open': return { type: 'open', root: CID.parse(m.root as string) }
    case 'want': case 'dont-have': case 'cancel': return { type: m.type, cid: CID.parse(m.cid as string) }
    case 'block': return { type: 'block', cid: CID.parse(m.cid as string), bytes: fromHex(m.bytes as string) }
    case 'have': return { type: 'have', index: m.index as number }
    case 'bitfield': return { type: 'bitfield', status: m.status as HolderStatus, leaves: m.leaves as number, bits: fromHex(m.bits as string) }
  }
}

/** A message as plain data (CIDs as strings with their bytes, bytes as hex), for deepEqual. */
function plain (m: SwarmMessage): Record<string, unknown> {
  switch (m.type) {
    case 'open': return { type: m.type, root: m.root.toString(), rootBytes: toHex(m.root.bytes) }
    case 'want': case 'dont-have': case 'cancel': return { type: m.type, cid: m.cid.toString(), cidBytes: toHex(m.cid.bytes) }
    case 'block': return { type: m.type, cid: m.cid.toString(), cidBytes: toHex(m.cid.bytes), bytes: toHex(m.bytes) }
    case 'have': return { type: m.type, index: m.index }
    case 'bitfield': return { type: m.type, status: m.status, leaves: m.leaves, bits: toHex(m.bits) }
  }
}

const encode = (m: SwarmMessage): Uint8Array => encodeMessage(m).subarray()

const cidArb: fc.Arbitrary<CID> = fc.tuple(fc.constantFrom('v0', 'raw', 'dag-pb'), fc.uint8Array({ minLength: 32, maxLength: 32 })).map(([kind, d]) => {
  const digest = createDigest(sha256.code, d)
  return kind === 'v0' ? CID.createV0(digest) : CID.createV1(kind === 'raw' ? raw.code : dagPb.code, digest)
})

const bitfieldArb: fc.Arbitrary<SwarmMessage> = fc.tuple(fc.constantFrom<HolderStatus>('none', 'partial', 'complete'), fc.integer({ min: 0, max: 5000 }))
  .chain(([status, leaves]) => fc.uint8Array({ minLength: bitfieldBytes(leaves), maxLength: bitfieldBytes(leaves) })
    .map((bits): SwarmMessage => ({ type: 'bitfield', status, leaves, bits })))

const messageArb: fc.Arbitrary<SwarmMessage> = fc.oneof(
  cidArb.map((root): SwarmMessage => ({ type: 'open', root })),
  cidArb.map((cid): SwarmMessage => ({ type: 'want', cid })),
  cidArb.map((cid): SwarmMessage => ({ type: 'dont-have', cid })),
  cidArb.map((cid): SwarmMessage => ({ type: 'cancel', cid })),
  fc.tuple(cidArb, fc.uint8Array({ maxLength: 2048 })).map(([cid, bytes]): SwarmMessage => ({ type: 'block', cid, bytes })),
  fc.integer({ min: 0, max: MAX_BITFIELD_LEAVES - 1 }).map((index): SwarmMessage => ({ type: 'have', index })),
  bitfieldArb
)

/** Runs decode and returns what happened: a message, or the name of what it threw. */
function outcome (bytes: Uint8Array): { ok: true, msg: SwarmMessage } | { ok: false, name: string, error: unknown } {
  try {
    return { ok: true, msg: decodeMessage(bytes) }
  } catch (err) {
    return { ok: false, name: (err as Error).name, error: err }
  }
}

describe('swarm wire format', () => {
  it('encodes the fixtures byte for byte and decodes them back', () => {
    assert.ok(vectors.vectors.length >= 7)
    assert.deepEqual(new Set(vectors.vectors.map(v => v.message.type)), new Set(['open', 'want', 'block', 'dont-have', 'have', 'cancel', 'bitfield']))
    for (const v of vectors.vectors) {
      const msg = fromVector(v.message)
      assert.equal(toHex(encode(msg)), v.hex, v.name)
      assert.deepEqual(plain(decodeMessage(fromHex(v.hex))), plain(msg), v.name)
    }
  })

  it('round-trips every message type (property)', () => {
    fc.assert(fc.property(messageArb, msg => {
      const bytes = encode(msg)
      const back = decodeMessage(bytes)
      assert.deepEqual(plain(back), plain(msg))
      assert.equal(toHex(encode(back)), toHex(bytes))
    }), { seed: 42, numRuns: 500 })
  })

  it('accepts each limit exactly at its boundary', async () => {
    const leaf = (await rawBlock(utf8('boundary'))).cid
    // The last leaf index and the largest leaf count a bitfield may name.
    assert.deepEqual(plain(decodeMessage(cat(Uint8Array.of(6), varint(MAX_BITFIELD_LEAVES - 1))) as SwarmMessage), { type: 'have', index: MAX_BITFIELD_LEAVES - 1 })
    const big = decodeMessage(cat(Uint8Array.of(2, 1), varint(MAX_BITFIELD_LEAVES), new Uint8Array(bitfieldBytes(MAX_BITFIELD_LEAVES))))
    assert.equal(big.type === 'bitfield' && big.leaves, MAX_BITFIELD_LEAVES)
    // A block of MAX_BLOCK_BYTES.
    const block = decodeMessage(encode({ type: 'block', cid: leaf, bytes: new Uint8Array(MAX_BLOCK_BYTES) }))
    assert.equal(block.type === 'block' && block.bytes.length, MAX_BLOCK_BYTES)
    // A CID of 128 bytes (an identity multihash of 124 bytes).
    const longCid = CID.createV1(raw.code, identity.digest(new Uint8Array(124)))
    assert.equal(longCid.bytes.length, 128)
    assert.equal(decodeMessage(encode({ type: 'want', cid: longCid })).type, 'want')
  })

  it('rejects malformed frames with SwarmProtocolError, naming the fault', async () => {
    const leaf = (await rawBlock(utf8('peerverse'))).cid
    const want = encode({ type: 'want', cid: leaf })
    const cases: Array<{ name: string, bytes: Uint8Array, message: RegExp }> = [
      { name: 'empty frame', bytes: new Uint8Array(0), message: /empty frame/ },
      { name: 'unknown type 0', bytes: Uint8Array.of(0, 1, 2), message: /unknown message type 0/ },
      { name: 'unknown type 8', bytes: Uint8Array.of(8), message: /unknown message type 8/ },
      { name: 'unknown type 255', bytes: cat(Uint8Array.of(255), leaf.bytes), message: /unknown message type 255/ },
      { name: 'truncated CID', bytes: want.subarray(0, want.length - 1), message: /truncated CID/ },
      { name: 'CID length with no CID', bytes: Uint8Array.of(3, 36), message: /truncated CID/ },
      { name: 'no CID length', bytes: Uint8Array.of(1), message: /malformed CID length/ },
      { name: 'CID length over 128', bytes: encode({ type: 'want', cid: CID.createV1(raw.code, identity.digest(new Uint8Array(125))) }), message: /CID length 129 is over 128/ },
      { name: 'malformed CID', bytes: Uint8Array.of(3, 4, 0xff, 0xff, 0xff, 0xff), message: /malformed CID/ },
      { name: 'trailing bytes after OPEN', bytes: cat(encode({ type: 'open', root: leaf }), Uint8Array.of(0)), message: /trailing bytes after OPEN/ },
      { name: 'trailing bytes after WANT', bytes: cat(want, Uint8Array.of(0)), message: /trailing bytes after WANT/ },
      { name: 'trailing bytes after DONT_HAVE', bytes: cat(encode({ type: 'dont-have', cid: leaf }), Uint8Array.of(1)), message: /trailing bytes after DONT_HAVE/ },
      { name: 'trailing bytes after CANCEL', bytes: cat(encode({ type: 'cancel', cid: leaf }), Uint8Array.of(1)), message: /trailing bytes after CANCEL/ },
      { name: 'trailing bytes after HAVE', bytes: Uint8Array.of(6, 1, 0), message: /trailing bytes after HAVE/ },
      { name: 'bitfield one byte short', bytes: Uint8Array.of(2, 1, 10, 0xff), message: /does not match its leaf count/ },
      { name: 'bitfield one byte long', bytes: Uint8Array.of(2, 1, 10, 0xff, 0xc0, 0), message: /does not match its leaf count/ },
      { name: 'bits for zero leaves', bytes: Uint8Array.of(2, 2, 0, 0), message: /does not match its leaf count/ },
      { name: 'leaf count MAX_BITFIELD_LEAVES + 1', bytes: cat(Uint8Array.of(2, 1), varint(MAX_BITFIELD_LEAVES + 1), new Uint8Array(bitfieldBytes(MAX_BITFIELD_LEAVES + 1))), message: /leaf count 1048577 is over 1048576/ },
      { name: 'unknown holder status', bytes: Uint8Array.of(2, 3, 0), message: /unknown holder status 3/ },
      { name: 'truncated BITFIELD', bytes: Uint8Array.of(2, 1), message: /truncated BITFIELD/ },
      { name: 'HAVE index MAX_BITFIELD_LEAVES', bytes: cat(Uint8Array.of(6), varint(MAX_BITFIELD_LEAVES)), message: /leaf index 1048576 is over 1048575/ },
      { name: 'HAVE index past 2^53', bytes: cat(Uint8Array.of(6), new Uint8Array(8).fill(0xff), Uint8Array.of(0x7f)), message: /leaf index/ },
      { name: 'HAVE with no index', bytes: Uint8Array.of(6), message: /malformed leaf index/ },
      { name: 'block of MAX_BLOCK_BYTES + 1', bytes: encode({ type: 'block', cid: leaf, bytes: new Uint8Array(MAX_BLOCK_BYTES + 1) }), message: new RegExp(`block of ${MAX_BLOCK_BYTES + 1} bytes`) },
      { name: 'frame of MAX_FRAME_BYTES + 1', bytes: cat(Uint8Array.of(4), new Uint8Array(MAX_FRAME_BYTES)), message: new RegExp(`frame of ${MAX_FRAME_BYTES + 1} bytes is over ${MAX_FRAME_BYTES}`) }
    ]
    for (const c of cases) {
      assert.throws(() => decodeMessage(c.bytes), (err: Error) => {
        assert.equal(err.name, 'SwarmProtocolError', `${c.name}: ${err.name}: ${err.message}`)
        assert.ok(err instanceof SwarmProtocolError)
        assert.match(err.message, c.message, c.name)
        return true
      }, c.name)
    }
    // encode refuses a bitfield whose bits do not match its leaf count, by the same name.
    assert.throws(() => encodeMessage({ type: 'bitfield', status: 'partial', leaves: 9, bits: new Uint8Array(1) }), { name: 'SwarmProtocolError' })
  })

  it('random bytes decode to a message or SwarmProtocolError, never another error (property)', () => {
    const check = (bytes: Uint8Array): void => {
      const r = outcome(bytes)
      if (!r.ok) assert.equal(r.name, 'SwarmProtocolError', `${toHex(bytes)}: ${String(r.error)}`)
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), check), { seed: 42, numRuns: 2000 })
    // Random bodies behind each valid type byte, to reach past the first switch.
    fc.assert(fc.property(fc.integer({ min: 1, max: 7 }), fc.uint8Array({ maxLength: 200 }), (type, body) => { check(cat(Uint8Array.of(type), body)) }), { seed: 42, numRuns: 3000 })
  })

  it('one-byte mutations, truncations and extensions of valid frames never throw anything but SwarmProtocolError (property)', () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
      fc.record({ kind: fc.constant('add' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) })
    )
    fc.assert(fc.property(messageArb, edit, (msg, e) => {
      const frame = encode(msg)
      const at = e.at % frame.length
      let bytes: Uint8Array
      if (e.kind === 'set') {
        bytes = frame.slice()
        bytes[at] = e.value
      } else if (e.kind === 'cut') {
        bytes = frame.subarray(0, at)
      } else {
        bytes = cat(frame.subarray(0, at), Uint8Array.of(e.value), frame.subarray(at))
      }
      const r = outcome(bytes)
      if (!r.ok) assert.equal(r.name, 'SwarmProtocolError', `${toHex(bytes)}: ${String(r.error)}`)
    }), { seed: 42, numRuns: 3000 })
  })

  // readVarint (src/content/swarm-wire.ts) returns `offset + encodingLength(value)` rather than the
  // bytes the varint took, so a non-minimal varint (0xa4 0x00 for 36) is accepted and the next field
  // is read from inside it; and readCid takes any CID multiformats will parse, so [0x00 0x70 ...]
  // (an explicit version 0) is taken as a CIDv0. Either way one message has many encodings.
  it('accepts only canonical frames: what decodes re-encodes to the same bytes', async () => {
    const digest = await sha256.digest(utf8('x'))
    const frames = [
      // WANT whose CID length is 36 written in two bytes: the second byte becomes the CID's version.
      cat(Uint8Array.of(3, 0xa4, 0x00, 0x70), digest.bytes),
      // WANT of a 36-byte "CID" with an explicit version 0 and the dag-pb codec.
      cat(Uint8Array.of(3, 36, 0x00, 0x70), digest.bytes),
      // BITFIELD of 10 leaves with the count in two bytes: its second byte is read as the first bits byte.
      Uint8Array.of(2, 1, 0x8a, 0x00, 0xff)
    ]
    for (const f of frames) {
      const r = outcome(f)
      if (r.ok) assert.equal(toHex(encode(r.msg)), toHex(f), `${toHex(f)} decoded to ${JSON.stringify(plain(r.msg))}`)
      else assert.equal(r.name, 'SwarmProtocolError')
    }
  })
})

// ---------------------------------------------------------------- content service, offline

const MiB = 1024 * 1024

/** A node that is built but never started (no network); its store is closed when the test ends. */
async function offlineNode (defer: (fn: () => Promise<unknown>) => void, maxStoreBytes?: number): Promise<PeerverseNode> {
  const dir = await tempDir(defer, 'content')
  const node = await createNode(mergeConfig(defaultConfig(dir), {
    discovery: { mdns: false },
    listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false },
    content: maxStoreBytes == null ? undefined : { maxStoreBytes }
  }))
  // stop() is a no-op on a node that never started, so the store is closed here.
  defer(async () => node.store.close())
  return node
}

async function readAll (it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return cat(...parts)
}

describe('content service on a node that is not started', () => {
  it('cat of any offset and length returns exactly those bytes of an added file (property)', async t => {
    const defer = cleanups(t)
    const node = await offlineNode(defer)
    const data = seededBytes(2 * CHUNK_SIZE + 333_333, 50)
    const added = await node.content.add(data, { name: 'three leaves' })
    assert.equal(added.size, data.length)
    assert.equal(added.blocks, 4)
    assert.equal(added.cid.code, dagPb.code)
    assertSameBytes(await readAll(node.content.cat(added.cid)), data)
    const size = data.length
    const position = fc.oneof(
      fc.integer({ min: 0, max: size + 10 }),
      fc.constantFrom(0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, size - 1, size, size + 1)
    )
    const length = fc.option(fc.oneof(fc.integer({ min: 0, max: size + 10 }), fc.integer({ min: 0, max: 3 }), fc.constantFrom(CHUNK_SIZE, CHUNK_SIZE + 1)), { nil: undefined })
    await fc.assert(fc.asyncProperty(position, length, async (offset, len) => {
      const got = await readAll(node.content.cat(added.cid.toString(), { offset, length: len }))
      const want = data.subarray(offset, len == null ? undefined : offset + len)
      assert.equal(got.length, want.length, `offset ${offset} length ${len}`)
      assert.ok(Buffer.from(got).equals(Buffer.from(want)), `offset ${offset} length ${len}: bytes differ`)
    }), { seed: 42, numRuns: 60 })
    await assert.rejects(readAll(node.content.cat(added.cid, { offset: -1 })), { name: 'InvalidRangeError' })
    await assert.rejects(readAll(node.content.cat(added.cid, { length: 1.5 })), { name: 'InvalidRangeError' })
    await assert.rejects(readAll(node.content.cat('not a cid')), { name: 'InvalidCidError' })
    // A single-chunk file is its own raw leaf.
    const small = seededBytes(1000, 51)
    const one = await node.content.add(small)
    assert.equal(one.cid.code, raw.code)
    assertSameBytes(await readAll(node.content.cat(one.cid, { offset: 10, length: 20 })), small.subarray(10, 30))
    const st = await node.content.stat(added.cid)
    assert.deepEqual({ kind: st.kind, size: st.size, blocks: st.blocks, localBlocks: st.localBlocks, pinned: st.pinned }, { kind: 'file', size, blocks: 3, localBlocks: 3, pinned: true })
  })

  it('gc removes unpinned content, keeps pinned content and the blocks it shares; unpin then gc removes it', async t => {
    const defer = cleanups(t)
    const node = await offlineNode(defer)
    const blocks = node.content['blockstore']
    const a = seededBytes(2 * CHUNK_SIZE + 4321, 60)
    // b shares its first chunk with a (the same leaf block) and has one of its own.
    const b = cat(a.subarray(0, CHUNK_SIZE), seededBytes(500_000, 61))
    const pinned = await node.content.add(a, { name: 'a' })
    const loose = await node.content.add(b, { pin: false })
    const aLeaves = (await node.content.stat(pinned.cid)).blocks as number
    assert.equal(aLeaves, 3)
    assert.equal(blocks.blockCount, 4 + 2, 'a: 3 leaves + root; b: 1 own leaf + root')
    const aRootSize = blocks.sizeOf(pinned.cid) as number
    const bRootSize = blocks.sizeOf(loose.cid) as number
    assert.deepEqual((await node.content.pins()).map(p => p.cid), [pinned.cid.toString()])

    const first = await node.content.gc()
    assert.deepEqual(first, { removed: 2, freed: 500_000 + bRootSize, strays: 0, indexPending: 0 })
    assert.equal(blocks.has(loose.cid), false)
    assert.equal(blocks.has(pinned.cid), true)
    assertSameBytes(await readAll(node.content.cat(pinned.cid)), a)
    const stat = await node.content.stat(pinned.cid)
    assert.equal(stat.localBlocks, 3)
    // Nothing more to collect.
    assert.deepEqual(await node.content.gc(), { removed: 0, freed: 0, strays: 0, indexPending: 0 })

    assert.equal(await node.content.unpin(pinned.cid), true)
    assert.equal(await node.content.unpin(pinned.cid), false)
    assert.deepEqual(await node.content.gc(), { removed: 4, freed: a.length + aRootSize, strays: 0, indexPending: 0 })
    assert.equal(blocks.blockCount, 0)
    assert.equal(blocks.usedBytes, 0)
    assert.deepEqual(await filesOnDisk(node.config.dataDir), [])
  })

  it('adding a file that fits the store keeps all of its blocks, even past the gc watermark', async t => {
    const defer = cleanups(t)
    const limit = 16 * MiB // the smallest store a config allows
    const node = await offlineNode(defer, limit)
    const data = seededBytes(15 * MiB, 70)
    assert.ok(data.length > limit * GC_WATERMARK && data.length < limit - 64 * 1024)
    // The file and its root fit under the limit, so the add must succeed and keep every block.
    const added = await node.content.add(data)
    const stat = await node.content.stat(added.cid)
    assert.equal(stat.localBlocks, stat.blocks, `${stat.localBlocks} of ${stat.blocks} leaves held after add`)
    assert.ok(node.content.status().usedBytes <= limit)
    assertSameBytes(await readAll(node.content.cat(added.cid, { signal: AbortSignal.timeout(5_000) })), data)
  })
})
