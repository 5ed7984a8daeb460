/**
 * Importing a CARv1 into the store: each block is checked against its CID by the reader (car.ts)
 * before it reaches `put`, only UnixFS codecs (raw, dag-pb) are taken, and once the stream ends
 * every root's DAG must be held whole (CarIncompleteError names the first block missing). The
 * caller (ContentService.importCar) runs this inside an import, so a refusal removes every block
 * the CAR wrote.
 */
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import type { ContentBlockstore } from './blocks.ts'
import { IDENTITY_CODE } from './car-dag.ts'
import { MalformedCarError, readCar, type CarReadOptions } from './car.ts'
import { UnsupportedContentError } from './reader.ts'

/** A CAR whose roots' DAGs it does not carry whole (a partial CAR, or one cut at a block boundary). */
export class CarIncompleteError extends Error {
  name = 'CarIncompleteError'
}

export interface CarImportResult {
  roots: CID[]
  /** Blocks read from the CAR (each verified). */
  blocks: number
  /** Bytes of those blocks. */
  bytes: number
}

/** Reads a CAR into the store through `put`; see the module comment. */
export async function importCar (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, blockstore: Pick<ContentBlockstore, 'has' | 'get'>, put: (cid: CID, bytes: Uint8Array) => Promise<void>, options: CarReadOptions = {}): Promise<CarImportResult> {
  const car = await readCar(source, options)
  for (const root of car.roots) {
    if (root.multihash.code === IDENTITY_CODE) throw new MalformedCarError(`the root ${root.toString()} is an identity CID; there is nothing to import`)
    if (root.code !== raw.code && root.code !== dagPb.code) throw new UnsupportedContentError(`the root ${root.toString()} is not UnixFS (codec 0x${root.code.toString(16)})`)
  }
  let blocks = 0
  let bytes = 0
  for await (const block of car.blocks()) {
    if (block.cid.code !== raw.code && block.cid.code !== dagPb.code) throw new UnsupportedContentError(`the block ${block.cid.toString()} is not UnixFS (codec 0x${block.cid.code.toString(16)})`)
    if (block.cid.code === dagPb.code) {
      try {
        dagPb.decode(block.bytes)
      } catch (err) {
        throw new UnsupportedContentError(`the block ${block.cid.toString()} is not dag-pb: ${(err as Error).message}`)
      }
    }
    await put(block.cid.toV1(), block.bytes)
    blocks++
    bytes += block.bytes.length
  }
  for (const root of car.roots) await checkWhole(blockstore, root.toV1())
  return { roots: car.roots.map(r => r.toV1()), blocks, bytes }
}

/** CarIncompleteError unless every block under `root` is held (an explicit stack: no depth to overflow). */
async function checkWhole (blockstore: Pick<ContentBlockstore, 'has' | 'get'>, root: CID): Promise<void> {
  const visited = new Set<string>()
  const stack: CID[] = [root]
  for (let cid = stack.pop(); cid != null; cid = stack.pop()) {
    if (cid.multihash.code === IDENTITY_CODE) continue
    const key = cid.toString()
    if (visited.has(key)) continue
    visited.add(key)
    if (!blockstore.has(cid)) throw new CarIncompleteError(`the CAR lacks ${key}, a block under its root ${root.toString()}`)
    if (cid.code !== dagPb.code) continue
    for (const link of dagPb.decode(await blockstore.get(cid)).Links) stack.push(link.Hash.toV1())
  }
}
