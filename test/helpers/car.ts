/**
 * Checking a CAR as a distrustful client would, with an implementation that is not ours
 * (@ipld/car's CarBlockIterator): used by the CAR and gateway tests.
 */
import assert from 'node:assert/strict'
import * as dagPb from '@ipld/dag-pb'
import { CarBlockIterator } from '@ipld/car'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

/**
 * Checks a CAR the way a distrustful client would, with @ipld/car's reader: the root it names,
 * every block's bytes against its CID, and every block of the DAG under the root present.
 */
export async function checkCar (bytes: Uint8Array, root: string, options: { whole?: boolean } = {}): Promise<Map<string, Uint8Array>> {
  const reader = await CarBlockIterator.fromIterable((async function * () { yield bytes })())
  assert.deepEqual((await reader.getRoots()).map(String), [root])
  const blocks = new Map<string, Uint8Array>()
  for await (const { cid, bytes: b } of reader) {
    assert.equal(cid.multihash.code, sha256.code)
    assert.deepEqual((await sha256.digest(b)).digest, cid.multihash.digest, `block ${cid.toString()} matches its CID`)
    assert.ok(!blocks.has(cid.toString()), `${cid.toString()} is sent once (dups=n)`)
    blocks.set(cid.toString(), b)
  }
  const walk = (key: string): void => {
    const b = blocks.get(key)
    assert.ok(b != null, `block ${key} of the DAG is in the CAR`)
    if (CID.parse(key).code === dagPb.code) for (const link of dagPb.decode(b).Links) walk(link.Hash.toV1().toString())
  }
  if (options.whole !== false) walk(root)
  return blocks
}

