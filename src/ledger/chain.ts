/**
 * Chain storage and the signed consensus messages. Committed blocks are stored with their commit
 * (the precommits of more than two thirds of the signing power) and written with sync before the
 * node acts on them; the consensus state is written to a write-ahead log with sync before any vote
 * or proposal leaves the node, so a restart can never sign a second, different one.
 *
 * A proposal is signed over the block's hash, as CometBFT signs a BlockID, not over the block: the
 * block travels beside the small signed proposal in one proposal message, and the hash covers all
 * of it (the header names the transactions through txRoot). So a block is bounded by
 * MAX_BLOCK_BYTES, not by the signed-record ceiling, and a relay that changes the block is caught
 * before anything is executed and never blamed on the proposer.
 *
 * Keys in the `ledger` sublevel: `b/<height>` block and commit, `r/<tx id>` receipts, `w/state`
 * the consensus write-ahead record, `w/b/<hash>` the blocks it commits us to (ours proposed, or
 * voted for), `w/probe` the write that tells whether the store takes writes again, `e/<...>`
 * evidence of double votes, `p/<tx id>` and `x/<n>` transactions we accepted and refused
 * (pending.ts).
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { recordId, signRecord, verifyRecordSync } from '../identity/record.ts'
import type { BytesSublevel } from '../store/store.ts'
import { blockHash, InvalidBlockError, txRoot, type Block, type BlockHeader, type Receipt, type Validator } from './state.ts'
import { decodeVote, MAX_VOTE_BYTES, verifyHeaderCommit, VOTE_TYPE, type SignedVote, type VotePayload } from './light.ts'

export { decodeVote, InvalidCommitError, MAX_VOTE_BYTES, verifyLightClientProof, VOTE_TYPE, type SignedVote, type VotePayload } from './light.ts'

export const PROPOSAL_TYPE = 'peerverse/proposal'
/** Largest encoded block. */
export const MAX_BLOCK_BYTES = 400 * 1024
/** Largest signed proposal record (it names the block by hash; the block travels beside it). */
export const MAX_PROPOSAL_RECORD_BYTES = 1024
/** Largest proposal message: the signed proposal and the encoded block, with their framing. */
export const MAX_PROPOSAL_MESSAGE_BYTES = MAX_BLOCK_BYTES + MAX_PROPOSAL_RECORD_BYTES + 64

const pad = (n: number): string => String(n).padStart(12, '0')

export interface ProposalPayload { height: number, round: number, polRound: number, value: string }
/** A decoded proposal message: the signed fields, who signed them, and the block (hash and txRoot checked). */
export interface DecodedProposal extends ProposalPayload { proposer: string, blockValue: Block, bytes: Uint8Array }

/** A proposal message that is malformed, or whose block is not the one the proposer signed (a relay's doing, or garbage). */
export class InvalidProposalError extends Error {
  name = 'InvalidProposalError'
}

export function encodeBlock (block: Block): Uint8Array {
  return dagCbor.encode(block)
}

/** Decodes a block's bytes; InvalidBlockError for anything malformed. */
export function decodeBlock (bytes: Uint8Array): Block {
  if (bytes.length > MAX_BLOCK_BYTES) throw new InvalidBlockError(`block is ${bytes.length} bytes, over ${MAX_BLOCK_BYTES}`)
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidBlockError(`block is not DAG-CBOR: ${(err as Error).message}`)
  }
  const b = value as { header?: Record<string, unknown>, txs?: unknown }
  const h = b?.header
  if (h == null || typeof h !== 'object' || !Array.isArray(b.txs) || !b.txs.every(t => t instanceof Uint8Array)) throw new InvalidBlockError('block must have a header and a list of transactions')
  const keys = ['chain', 'height', 'time', 'prev', 'proposer', 'txRoot', 'stateRoot', 'validatorsHash']
  if (Object.keys(h).length !== keys.length || !keys.every(k => k in h)) throw new InvalidBlockError('malformed header')
  if (typeof h.height !== 'number' || typeof h.time !== 'number' || typeof h.chain !== 'string' || typeof h.proposer !== 'string' ||
    typeof h.txRoot !== 'string' || typeof h.stateRoot !== 'string' || typeof h.validatorsHash !== 'string' || !(h.prev === null || typeof h.prev === 'string')) {
    throw new InvalidBlockError('malformed header')
  }
  return { header: h as unknown as BlockHeader, txs: b.txs as Uint8Array[] }
}

/** Signs a proposal for `block` (whose hash must be `proposal.value`) and returns the proposal message's bytes. */
export async function signProposal (key: Ed25519Key, proposal: ProposalPayload, block: Block): Promise<Uint8Array> {
  const { height, round, polRound, value } = proposal
  if (blockHash(block.header) !== value) throw new InvalidProposalError('proposal value is not its block\'s hash')
  const signed = (await signRecord(key, PROPOSAL_TYPE, { height, round, polRound, value })).bytes
  return encodeProposalMessage(signed, encodeBlock(block))
}

/** The proposal message: the signed proposal and the encoded block it names. */
export function encodeProposalMessage (proposal: Uint8Array, block: Uint8Array): Uint8Array {
  return dagCbor.encode({ proposal, block })
}

export async function signVote (key: Ed25519Key, vote: VotePayload): Promise<Uint8Array> {
  return (await signRecord(key, VOTE_TYPE, vote)).bytes
}

/** Evidence of a double vote: two votes one validator signed for one (height, round, type), for different values. */
export interface DoubleVote { validator: string, height: number, round: number, type: 'prevote' | 'precommit', a: SignedVote, b: SignedVote }

export class InvalidEvidenceError extends Error {
  name = 'InvalidEvidenceError'
}

/** The evidence message of the consensus topic: the two signed votes, in byte order (one encoding per pair). */
export function encodeEvidenceMessage (a: Uint8Array, b: Uint8Array): Uint8Array {
  const [first, second] = Buffer.compare(a, b) <= 0 ? [a, b] : [b, a]
  return dagCbor.encode({ evidence: [first, second] })
}

/** Checks two signed votes are a double vote (each verified); InvalidEvidenceError otherwise. */
export function decodeEvidence (a: Uint8Array, b: Uint8Array): DoubleVote {
  let va: SignedVote
  let vb: SignedVote
  try {
    va = decodeVote(a)
    vb = decodeVote(b)
  } catch (err) {
    throw new InvalidEvidenceError(`evidence holds a bad vote: ${(err as Error).name}: ${(err as Error).message}`)
  }
  if (va.validator !== vb.validator || va.height !== vb.height || va.round !== vb.round || va.type !== vb.type) {
    throw new InvalidEvidenceError('the two votes are not one validator\'s for one height, round and step')
  }
  if (va.value === vb.value) throw new InvalidEvidenceError('the two votes are for the same value')
  return { validator: va.validator, height: va.height, round: va.round, type: va.type, a: va, b: vb }
}

/**
 * Decodes a consensus-topic message: a signed vote, a proposal message, or evidence of a double
 * vote. Throws the record errors, InvalidBlockError, InvalidProposalError or InvalidEvidenceError
 * for anything malformed or inconsistent.
 */
export function decodeConsensusMessage (bytes: Uint8Array): { kind: 'vote', vote: SignedVote } | { kind: 'proposal', proposal: DecodedProposal } | { kind: 'evidence', evidence: DoubleVote } {
  if (!(bytes instanceof Uint8Array) || bytes.length > MAX_PROPOSAL_MESSAGE_BYTES) throw new InvalidProposalError(`message is over ${MAX_PROPOSAL_MESSAGE_BYTES} bytes`)
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidProposalError(`not DAG-CBOR: ${(err as Error).message}`)
  }
  const m = value as Record<string, unknown> | null
  if (m != null && typeof m === 'object' && m.type === VOTE_TYPE) return { kind: 'vote', vote: decodeVote(bytes) }
  if (m != null && typeof m === 'object' && 'evidence' in m) {
    const pair = m.evidence
    if (Object.keys(m).length !== 1 || !Array.isArray(pair) || pair.length !== 2 || !pair.every(v => v instanceof Uint8Array && v.length <= MAX_VOTE_BYTES)) {
      throw new InvalidEvidenceError('an evidence message holds exactly two votes')
    }
    return { kind: 'evidence', evidence: decodeEvidence(pair[0], pair[1]) }
  }
  return { kind: 'proposal', proposal: proposalFrom(m, bytes) }
}

/**
 * Decodes and verifies a proposal message: the proposer's signature, the block's hash against the
 * signed value and its transactions against the header's txRoot (the block inside is not executed).
 */
export function decodeProposal (bytes: Uint8Array): DecodedProposal {
  const decoded = decodeConsensusMessage(bytes)
  if (decoded.kind !== 'proposal') throw new InvalidProposalError('not a proposal message')
  return decoded.proposal
}

function proposalFrom (m: Record<string, unknown> | null, bytes: Uint8Array): DecodedProposal {
  if (m == null || typeof m !== 'object' || Object.keys(m).length !== 2 || !(m.proposal instanceof Uint8Array) || !(m.block instanceof Uint8Array)) {
    throw new InvalidProposalError('a proposal message holds exactly a proposal and a block')
  }
  const r = verifyRecordSync<ProposalPayload>(m.proposal, { maxBytes: MAX_PROPOSAL_RECORD_BYTES, type: PROPOSAL_TYPE })
  const p = r.record.payload
  if (p == null || typeof p !== 'object' || Object.keys(p).length !== 4 || !Number.isSafeInteger(p.height) || !Number.isSafeInteger(p.round) || p.round < 0 ||
    !Number.isSafeInteger(p.polRound) || p.polRound < -1 || typeof p.value !== 'string' || !/^[0-9a-f]{64}$/.test(p.value)) {
    throw new InvalidBlockError('malformed proposal')
  }
  let blockValue: Block
  try {
    blockValue = decodeBlock(m.block)
  } catch (err) {
    throw new InvalidProposalError(`the block beside the proposal: ${(err as Error).message}`)
  }
  if (blockHash(blockValue.header) !== p.value) throw new InvalidProposalError('the block beside the proposal is not the one it names')
  // The header is the proposer's; the transactions beside it must be the ones it names.
  if (txRoot(blockValue.txs.map(recordId)) !== blockValue.header.txRoot) throw new InvalidProposalError('the transactions beside the proposal do not match its txRoot')
  return { height: p.height, round: p.round, polRound: p.polRound, value: p.value, proposer: r.record.author, blockValue, bytes }
}

/**
 * Checks that `commit` holds precommits for `block` at its height from more than two thirds of
 * `validators`' power; InvalidCommitError otherwise.
 */
export function verifyCommit (block: Block, commit: Uint8Array[], validators: Validator[]): void {
  verifyHeaderCommit(block.header, commit, validators)
}

export interface StoredBlock { block: Block, commit: Uint8Array[] }

/** One operation of a batch written to the ledger's sublevel. */
export type BatchOp = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

/** Where a block the write-ahead record commits us to is kept. */
export const walBlockKey = (hash: string): string => `w/b/${hash}`

/** A receipt with only its defined fields (DAG-CBOR has no undefined). */
function plainReceipt (r: Receipt): Receipt {
  const out: Receipt = { tx: r.tx, sender: r.sender, height: r.height, ok: r.ok }
  if (r.error !== undefined) out.error = r.error
  if (r.message !== undefined) out.message = r.message
  if (r.created !== undefined) out.created = r.created
  return out
}

export class ChainStore {
  private readonly db: BytesSublevel
  /** The write-ahead record's text as last written or read (null: none); undefined until then. */
  private walText?: string | null

  constructor (db: BytesSublevel) {
    this.db = db
  }

  /**
   * Writes a committed block with its commit and receipts, synced to disk, in one batch with
   * `also` (the write-ahead blocks and pending records the commit makes stale go with it).
   */
  async putBlock (stored: StoredBlock, receipts: Receipt[], also: BatchOp[] = []): Promise<void> {
    const ops: BatchOp[] = [
      { type: 'put', key: `b/${pad(stored.block.header.height)}`, value: dagCbor.encode({ block: encodeBlock(stored.block), commit: stored.commit }) },
      ...receipts.map(r => ({ type: 'put' as const, key: `r/${r.tx}`, value: dagCbor.encode(plainReceipt(r)) })),
      ...also
    ]
    await this.db.batch(ops, { sync: true } as Record<string, unknown>)
  }

  async getBlock (height: number): Promise<StoredBlock | undefined> {
    const raw = await this.db.get(`b/${pad(height)}`)
    if (raw == null) return undefined
    const { block, commit } = dagCbor.decode(raw) as { block: Uint8Array, commit: Uint8Array[] }
    return { block: decodeBlock(block), commit }
  }

  async * blocks (from: number): AsyncGenerator<StoredBlock> {
    for await (const raw of this.db.values({ gte: `b/${pad(from)}`, lt: 'b0' })) {
      const { block, commit } = dagCbor.decode(raw) as { block: Uint8Array, commit: Uint8Array[] }
      yield { block: decodeBlock(block), commit }
    }
  }

  async receipt (tx: string): Promise<Receipt | undefined> {
    const raw = await this.db.get(`r/${tx}`)
    if (raw == null) return undefined
    const r = dagCbor.decode(raw) as Receipt
    return r
  }

  /**
   * Writes the consensus write-ahead record (synced), with the blocks it commits us to that are
   * not on disk yet: a restart that restores a decision, or our own proposal, then holds its block.
   */
  async putWal (record: unknown, blocks: Block[] = []): Promise<void> {
    const text = JSON.stringify(record)
    await this.db.batch([
      { type: 'put', key: 'w/state', value: new TextEncoder().encode(text) },
      ...blocks.map(b => ({ type: 'put' as const, key: walBlockKey(blockHash(b.header)), value: encodeBlock(b) }))
    ], { sync: true } as Record<string, unknown>)
    this.walText = text
  }

  /** The blocks written beside the write-ahead record (any height: the caller keeps those of its own). */
  async walBlocks (): Promise<Array<{ hash: string, block: Block }>> {
    const out: Array<{ hash: string, block: Block }> = []
    for await (const [key, raw] of this.db.iterator({ gte: 'w/b/', lt: 'w/b0' })) out.push({ hash: key.slice(4), block: decodeBlock(raw) })
    return out
  }

  /** Forgets the write-ahead record read or written last, so the next getWal reads what is on disk (after a failed write). */
  forgetWal (): void {
    this.walText = undefined
  }

  /** A small synced write: whether the store takes writes (again). Throws the store's error. */
  async probe (): Promise<void> {
    await this.db.put('w/probe', new TextEncoder().encode(String(Date.now())), { sync: true } as Record<string, unknown>)
  }

  /** The last write-ahead record: read from disk once, then kept from our own writes (only we write it). */
  async getWal (): Promise<unknown> {
    if (this.walText === undefined) {
      const raw = await this.db.get('w/state')
      this.walText = raw == null ? null : new TextDecoder().decode(raw)
    }
    return this.walText == null ? undefined : JSON.parse(this.walText)
  }

  /**
   * Stores evidence of a double vote (synced), once per validator, height, round and step;
   * returns false when that double vote was stored already.
   */
  async putEvidence (a: Uint8Array, b: Uint8Array): Promise<boolean> {
    const e = decodeEvidence(a, b)
    const key = `e/${e.validator}/${e.height}/${e.round}/${e.type}`
    if (await this.db.get(key) != null) return false
    const [first, second] = Buffer.compare(a, b) <= 0 ? [a, b] : [b, a]
    await this.db.put(key, dagCbor.encode([first, second]), { sync: true } as Record<string, unknown>)
    return true
  }

  async evidence (): Promise<Array<[Uint8Array, Uint8Array]>> {
    const out: Array<[Uint8Array, Uint8Array]> = []
    for await (const raw of this.db.values({ gte: 'e/', lt: 'e0' })) out.push(dagCbor.decode(raw) as [Uint8Array, Uint8Array])
    return out
  }
}
