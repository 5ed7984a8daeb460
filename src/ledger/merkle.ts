/**
 * The state commitment: a binary Merkle tree over the state's key/value pairs sorted by key, so a
 * light client holding only a trusted root can check one value (or its absence) from a proof that
 * an untrusted peer hands it. Leaves and inner nodes are domain-separated (RFC 6962 style), so a
 * node can never pass for a leaf. Pure.
 */
import { EMPTY_ROOT, leafHash as leafHashBytes, nodeHash as nodeHashBytes, type InclusionProof, type ProofStep, type StateProof } from './proof.ts'

export { hashCounts, InvalidProofError, verifyStateProof, type InclusionProof, type ProofStep, type StateProof } from './proof.ts'

const EMPTY = Buffer.from(EMPTY_ROOT, 'hex')

/** Bytes as a Buffer: the same object when they are one (sha256 gives Buffers on Node), else a view. */
function buf (b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/** The hash of one leaf (domain-separated from inner nodes), proof.ts's, as a Buffer. */
export function leafHash (key: string, value: Uint8Array): Buffer {
  return buf(leafHashBytes(key, value))
}

function nodeHash (left: Buffer, right: Buffer): Buffer {
  return buf(nodeHashBytes(left, right))
}

export interface Leaf {
  key: string
  value: Uint8Array
  /**
   * leafHash(key, value), when the caller already has it (a cache); computed otherwise. The tree
   * keeps it, so its bytes must not be changed afterwards (a later tree built on this one takes
   * the same object for the same hash).
   */
  hash?: Uint8Array
}

/** The parts of a tree: see MerkleTree's fields. */
interface Parts {
  keys: readonly string[]
  rank: Int32Array
  leaves: Leaf[]
  levels: Buffer[][]
}

const byKey = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** A leaf's hash as a Buffer: the caller's own when it is one, else a view of it, else computed. */
function hashOf (l: Leaf): Buffer {
  if (l.hash == null) return leafHash(l.key, l.value)
  return buf(l.hash)
}

/**
 * A Merkle tree over sorted leaves (sorted by key, compared as strings).
 *
 * A tree can be built from the previous state's tree: most blocks change a few hundred values and
 * add no key, so the new tree keeps the previous one's order (no sort) and hashes again only the
 * nodes above leaves whose hash changed, O(k log N) instead of N - 1 hashes and a sort. The result
 * is the tree `new MerkleTree(entries)` gives, bit for bit: same root, same proofs.
 */
export class MerkleTree {
  /** The input's keys in the order they came in: a later input in the same order can reuse `rank`. */
  private readonly keys: readonly string[]
  /** rank[i]: the sorted position of the i-th input leaf. */
  private readonly rank: Int32Array
  /** The leaves, sorted by key. */
  private readonly leaves: Leaf[]
  /** levels[0]: the leaves' hashes; each level above hashes pairs of the one below; the last holds the root. */
  private readonly levels: Buffer[][]

  /**
   * A tree over `entries`. With `previous`, reuses its work when `entries` has exactly its keys in
   * the same order (a Map's iteration order, which `set` of an existing key keeps); otherwise (a key
   * added, removed or moved) builds from scratch. Never mutates `previous`, which stays valid.
   * Leaves without a `hash` are hashed again to be compared, so pass hashes for a cheap update.
   */
  constructor (entries: Iterable<Leaf>, previous?: MerkleTree) {
    const input = Array.isArray(entries) ? entries as readonly Leaf[] : [...entries]
    const parts = previous?.hasKeysOf(input) === true ? MerkleTree.update(previous, input) : MerkleTree.build(input)
    this.keys = parts.keys
    this.rank = parts.rank
    this.leaves = parts.leaves
    this.levels = parts.levels
  }

  /** Whether `entries` has exactly this tree's keys, in the order this tree was given them (so it can reuse this tree). */
  hasKeysOf (entries: readonly Leaf[]): boolean {
    if (entries.length !== this.keys.length) return false
    for (let i = 0; i < entries.length; i++) if (entries[i].key !== this.keys[i]) return false
    return true
  }

  /** From scratch: sort, check keys are unique, hash every leaf and node. */
  private static build (input: readonly Leaf[]): Parts {
    const keys = input.map(l => l.key)
    // Sort positions rather than leaves, to remember where each input leaf went (rank).
    const order = keys.map((_, i) => i).sort((a, b) => byKey(keys[a], keys[b]))
    const rank = new Int32Array(order.length)
    for (let j = 0; j < order.length; j++) rank[order[j]] = j
    const leaves = order.map(i => input[i])
    for (let i = 1; i < leaves.length; i++) if (leaves[i].key === leaves[i - 1].key) throw new Error(`duplicate key ${leaves[i].key}`)
    let level = leaves.map(hashOf)
    const levels = [level]
    while (level.length > 1) {
      const next: Buffer[] = []
      // An odd node is promoted unchanged (no duplication, so no second-preimage via CVE-2012-2459).
      for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? nodeHash(level[i], level[i + 1]) : level[i])
      levels.push(next)
      level = next
    }
    return { keys, rank, leaves, levels }
  }

  /**
   * From `previous`, whose keys `input` has in the same order (hasKeysOf): the same sorted order
   * and shape, so only the leaves whose hash changed, and the nodes above them, are new.
   */
  private static update (previous: MerkleTree, input: readonly Leaf[]): Parts {
    const { keys, rank } = previous
    const old = previous.levels[0]
    const leaves = new Array<Leaf>(input.length)
    const changed: number[] = []
    const hashes: Buffer[] = []
    for (let i = 0; i < input.length; i++) {
      const l = input[i]
      const j = rank[i]
      leaves[j] = l
      // The same hash object is the same hash (see Leaf.hash); otherwise compare the bytes.
      if (l.hash != null && l.hash === old[j]) continue
      const h = hashOf(l)
      if (h.equals(old[j])) continue
      changed.push(j)
      hashes.push(h)
    }
    // Nothing changed: the levels are shared (no tree ever changes its levels once built).
    if (changed.length === 0) return { keys, rank, leaves, levels: previous.levels }
    const levels = previous.levels.map(l => l.slice())
    for (let c = 0; c < changed.length; c++) levels[0][changed[c]] = hashes[c]
    // Walk up level by level, hashing each parent of a changed node once (sorted, so repeats are adjacent).
    let dirty = changed.sort((a, b) => a - b)
    for (let d = 0; d + 1 < levels.length; d++) {
      const level = levels[d]
      const up = levels[d + 1]
      const parents: number[] = []
      for (const j of dirty) {
        const p = j >> 1
        if (parents.length > 0 && parents[parents.length - 1] === p) continue
        parents.push(p)
        const left = p << 1
        up[p] = left + 1 < level.length ? nodeHash(level[left], level[left + 1]) : level[left]
      }
      dirty = parents
    }
    return { keys, rank, leaves, levels }
  }

  get root (): string {
    const top = this.levels[this.levels.length - 1]
    return (top.length === 0 ? EMPTY : top[0]).toString('hex')
  }

  get size (): number { return this.leaves.length }

  private inclusion (index: number): InclusionProof {
    const path: ProofStep[] = []
    let i = index
    for (let depth = 0; depth < this.levels.length - 1; depth++) {
      const level = this.levels[depth]
      const sib = i ^ 1
      if (sib < level.length) path.push({ sibling: level[sib].toString('hex'), left: sib < i })
      i >>= 1
    }
    const leaf = this.leaves[index]
    return { key: leaf.key, value: Buffer.from(leaf.value).toString('hex'), index, total: this.leaves.length, path }
  }

  /** A proof of the key's value, or of its absence. */
  prove (key: string): StateProof {
    let lo = 0
    let hi = this.leaves.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.leaves[mid].key < key) lo = mid + 1
      else hi = mid
    }
    if (lo < this.leaves.length && this.leaves[lo].key === key) return { root: this.root, key, present: this.inclusion(lo) }
    return {
      root: this.root,
      key,
      before: lo > 0 ? this.inclusion(lo - 1) : undefined,
      after: lo < this.leaves.length ? this.inclusion(lo) : undefined
    }
  }
}
