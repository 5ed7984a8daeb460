/**
 * Checking a state proof: the hashes of the state's Merkle tree (merkle.ts builds it) and the
 * check of one value, or its absence, against a trusted root. Plain bytes and no `node:` import,
 * so the browser's wallet runs this very code. Leaves and inner nodes are domain-separated
 * (RFC 6962 style), so a node can never pass for a leaf. Pure.
 */
import { sha256 } from '../identity/hash.ts'

const LEAF = Uint8Array.of(0)
const NODE = Uint8Array.of(1)
const utf8 = new TextEncoder()

export class InvalidProofError extends Error {
  name = 'InvalidProofError'
}

/**
 * How many leaf and inner-node hashes this process has computed. For tests, which check that an
 * updated tree hashes only the paths above the leaves that changed.
 */
export const hashCounts = { leaf: 0, node: 0 }

/** Lowercase hex of bytes. */
export function hexOf (b: Uint8Array): string {
  let s = ''
  for (const x of b) s += (x < 16 ? '0' : '') + x.toString(16)
  return s
}

/** Bytes of lowercase hex (checked by the caller). */
export function bytesOfHex (s: string): Uint8Array {
  const out = new Uint8Array(s.length >> 1)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16)
  return out
}

/** The root of the empty tree. */
export const EMPTY_ROOT = hexOf(sha256())

/** The hash of one leaf (domain-separated from inner nodes). */
export function leafHash (key: string, value: Uint8Array): Uint8Array {
  hashCounts.leaf++
  const k = utf8.encode(key)
  const len = new Uint8Array(4)
  new DataView(len.buffer).setUint32(0, k.length)
  return sha256(LEAF, len, k, value)
}

/** The hash of an inner node over its two children. */
export function nodeHash (left: Uint8Array, right: Uint8Array): Uint8Array {
  hashCounts.node++
  return sha256(NODE, left, right)
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

/** Recomputes the root from an inclusion proof; InvalidProofError when the path is malformed. */
function rootOf (p: InclusionProof): string {
  // Proofs come from untrusted peers as JSON: check every field's type before use.
  if (p == null || typeof p !== 'object' || typeof p.key !== 'string' || typeof p.value !== 'string' || !Array.isArray(p.path) ||
    !p.path.every(s => s != null && typeof s === 'object' && typeof s.sibling === 'string' && typeof s.left === 'boolean')) {
    throw new InvalidProofError('malformed inclusion proof')
  }
  if (!Number.isSafeInteger(p.index) || !Number.isSafeInteger(p.total) || p.index < 0 || p.index >= p.total) throw new InvalidProofError('bad index')
  if (!/^([0-9a-f]{2})*$/.test(p.value)) throw new InvalidProofError('value is not hex')
  let hash = leafHash(p.key, bytesOfHex(p.value))
  // Walk the same shape the tree has: at each level, a node has a sibling unless it is the odd last one.
  let i = p.index
  let width = p.total
  let step = 0
  while (width > 1) {
    const sib = i ^ 1
    if (sib < width) {
      const s = p.path[step++]
      if (s == null || !/^[0-9a-f]{64}$/.test(s.sibling) || s.left !== (sib < i)) throw new InvalidProofError('path does not fit the tree')
      const sibling = bytesOfHex(s.sibling)
      hash = s.left ? nodeHash(sibling, hash) : nodeHash(hash, sibling)
    }
    i >>= 1
    width = Math.ceil(width / 2)
  }
  if (step !== p.path.length) throw new InvalidProofError('path is longer than the tree')
  return hexOf(hash)
}

/**
 * Checks a proof against a trusted root and returns the proven value's bytes, or null when the
 * proof shows the key is absent. InvalidProofError for anything that does not add up.
 */
export function verifyStateProof (root: string, key: string, proof: StateProof): Uint8Array | null {
  if (proof == null || typeof proof !== 'object') throw new InvalidProofError('malformed proof')
  if (proof.key !== key) throw new InvalidProofError('proof is for another key')
  if (proof.present != null) {
    if (proof.present.key !== key || rootOf(proof.present) !== root) throw new InvalidProofError('inclusion proof does not match the root')
    return bytesOfHex(proof.present.value)
  }
  const { before, after } = proof
  if (before == null && after == null) {
    if (root !== EMPTY_ROOT) throw new InvalidProofError('absence in a non-empty tree needs neighbours')
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
