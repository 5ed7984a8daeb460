/**
 * The state commitment: a binary Merkle tree over the state's key/value pairs sorted by key, so a
 * light client holding only a trusted root can check one value (or its absence) from a proof that
 * an untrusted peer hands it. Leaves and inner nodes are domain-separated (RFC 6962 style), so a
 * node can never pass for a leaf. Pure.
 */
import { createHash } from 'node:crypto'

const LEAF = Buffer.from([0])
const NODE = Buffer.from([1])
const EMPTY = createHash('sha256').digest()

export class InvalidProofError extends Error {
  name = 'InvalidProofError'
}

/** The hash of one leaf (domain-separated from inner nodes). */
export function leafHash (key: string, value: Uint8Array): Buffer {
  const k = Buffer.from(key, 'utf8')
  const len = Buffer.alloc(4)
  len.writeUInt32BE(k.length)
  return createHash('sha256').update(LEAF).update(len).update(k).update(value).digest()
}

function nodeHash (left: Buffer, right: Buffer): Buffer {
  return createHash('sha256').update(NODE).update(left).update(right).digest()
}

export interface Leaf {
  key: string
  value: Uint8Array
  /** leafHash(key, value), when the caller already has it (a cache); computed otherwise. */
  hash?: Uint8Array
}

/** One step up from a node: the sibling's hash and which side it is on. */
export interface ProofStep {
  sibling: string
  left: boolean
}

export interface InclusionProof {
  key: string
  /** Hex of the value's bytes. */
  value: string
  index: number
  total: number
  path: ProofStep[]
}

/** Either the key's leaf, or the two leaves around where it would be (absence). */
export interface StateProof {
  root: string
  key: string
  present?: InclusionProof
  /** Absence: the leaf just before and just after the key (either may be missing at an edge). */
  before?: InclusionProof
  after?: InclusionProof
}

/** A Merkle tree over sorted leaves (sorted by key, compared as strings). */
export class MerkleTree {
  private readonly leaves: Leaf[]
  private readonly levels: Buffer[][]

  constructor (entries: Iterable<Leaf>) {
    this.leaves = [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    for (let i = 1; i < this.leaves.length; i++) if (this.leaves[i].key === this.leaves[i - 1].key) throw new Error(`duplicate key ${this.leaves[i].key}`)
    let level = this.leaves.map(l => l.hash != null ? Buffer.from(l.hash.buffer, l.hash.byteOffset, l.hash.byteLength) : leafHash(l.key, l.value))
    this.levels = [level]
    while (level.length > 1) {
      const next: Buffer[] = []
      // An odd node is promoted unchanged (no duplication, so no second-preimage via CVE-2012-2459).
      for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? nodeHash(level[i], level[i + 1]) : level[i])
      this.levels.push(next)
      level = next
    }
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

/** Recomputes the root from an inclusion proof; InvalidProofError when the path is malformed. */
function rootOf (p: InclusionProof): string {
  // Proofs come from untrusted peers as JSON: check every field's type before use.
  if (p == null || typeof p !== 'object' || typeof p.key !== 'string' || typeof p.value !== 'string' || !Array.isArray(p.path) ||
    !p.path.every(s => s != null && typeof s === 'object' && typeof s.sibling === 'string' && typeof s.left === 'boolean')) {
    throw new InvalidProofError('malformed inclusion proof')
  }
  if (!Number.isSafeInteger(p.index) || !Number.isSafeInteger(p.total) || p.index < 0 || p.index >= p.total) throw new InvalidProofError('bad index')
  if (!/^([0-9a-f]{2})*$/.test(p.value)) throw new InvalidProofError('value is not hex')
  let hash = leafHash(p.key, Buffer.from(p.value, 'hex'))
  // Walk the same shape the tree has: at each level, a node has a sibling unless it is the odd last one.
  let i = p.index
  let width = p.total
  let step = 0
  while (width > 1) {
    const sib = i ^ 1
    if (sib < width) {
      const s = p.path[step++]
      if (s == null || !/^[0-9a-f]{64}$/.test(s.sibling) || s.left !== (sib < i)) throw new InvalidProofError('path does not fit the tree')
      const sibling = Buffer.from(s.sibling, 'hex')
      hash = s.left ? nodeHash(sibling, hash) : nodeHash(hash, sibling)
    }
    i >>= 1
    width = Math.ceil(width / 2)
  }
  if (step !== p.path.length) throw new InvalidProofError('path is longer than the tree')
  return hash.toString('hex')
}

/**
 * Checks a proof against a trusted root and returns the proven value (hex of its bytes), or null
 * when the proof shows the key is absent. InvalidProofError for anything that does not add up.
 */
export function verifyStateProof (root: string, key: string, proof: StateProof): Uint8Array | null {
  if (proof == null || typeof proof !== 'object') throw new InvalidProofError('malformed proof')
  if (proof.key !== key) throw new InvalidProofError('proof is for another key')
  if (proof.present != null) {
    if (proof.present.key !== key || rootOf(proof.present) !== root) throw new InvalidProofError('inclusion proof does not match the root')
    return Buffer.from(proof.present.value, 'hex')
  }
  const { before, after } = proof
  if (before == null && after == null) {
    if (root !== EMPTY.toString('hex')) throw new InvalidProofError('absence in a non-empty tree needs neighbours')
    return null
  }
  const total = (before ?? after)!.total
  if (before != null) {
    if (rootOf(before) !== root || !(before.key < key)) throw new InvalidProofError('left neighbour does not fit')
    if (after == null && before.index !== total - 1) throw new InvalidProofError('left neighbour is not the last leaf')
  }
  if (after != null) {
    if (rootOf(after) !== root || !(after.key > key) || after.total !== total) throw new InvalidProofError('right neighbour does not fit')
    if (before == null && after.index !== 0) throw new InvalidProofError('right neighbour is not the first leaf')
  }
  if (before != null && after != null && after.index !== before.index + 1) throw new InvalidProofError('neighbours are not adjacent')
  return null
}
