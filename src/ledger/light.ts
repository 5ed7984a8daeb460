/**
 * The light client: what a wallet checks so that it need not trust the peer that answers it.
 * Plain data, no `node:` import and no Buffer, so the browser runs this very code (the Node peer
 * uses the same functions: chain.ts and state.ts take them from here).
 *
 * What it trusts, and nothing else:
 * - The genesis: its validator set (stake / STAKE_PER_POWER) is the first trusted set. The client
 *   takes it from the first answer for a chain and pins it (trust on first use, as SSH pins a host
 *   key); a later genesis for the same chain that names another set is refused (GenesisChangedError).
 * - That validators holding more than a third of a trusted set's power never together sign a
 *   block off the one chain. To move from a trusted set to a header signed by another set, it
 *   uses CometBFT's light client rule (skipping verification): validators holding more than a
 *   third of the trusted set's power must have signed the new header, and more than two thirds of
 *   the new set's power; when too few did, it checks a header halfway first (bisection) and goes
 *   on from there. Headers here carry no next-validators hash, so sets are checked this way even
 *   between adjacent heights. This ledger has no unbonding period, so that must hold for
 *   validators also after they leave: an old set's majority could sign a false chain for a client
 *   that has not followed the chain since (CometBFT bounds this with its trusting period).
 * Then a proof is checked against the trusted header's state root (proof.ts).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { sha256Hex } from '../identity/hash.ts'
import { verifyRecordSync } from '../identity/record.ts'
import { InvalidProofError, verifyStateProof, type StateProof } from './proof.ts'

export const VOTE_TYPE = 'peerverse/vote'
/** Largest signed vote. */
export const MAX_VOTE_BYTES = 1024
/** Stake one unit of voting power needs. */
export const STAKE_PER_POWER = 1_000n
/** Validators at most (by stake). */
export const MAX_VALIDATORS = 100
/**
 * Votes a commit holds at most: one precommit per validator of a set (a commit is one round's
 * precommits for one block), so a peer cannot make a client check the same vote's signature over
 * and over.
 */
export const MAX_COMMIT_VOTES = MAX_VALIDATORS
/** Headers a light client fetches at most to move its trusted set to one new header (bisection). */
export const MAX_LIGHT_CLIENT_STEPS = 64

export interface Account { balance: bigint, nonce: number, stake: bigint }
export interface Validator { id: string, power: number }

export interface BlockHeader {
  chain: string
  height: number
  time: number
  prev: string | null
  proposer: string
  /** Hash over the transactions' ids in order. */
  txRoot: string
  /** Merkle root of the state after this block. */
  stateRoot: string
  /** Hash of the validator set that signs this block. */
  validatorsHash: string
}

export class InvalidBlockError extends Error {
  name = 'InvalidBlockError'
}

export class InvalidCommitError extends Error {
  name = 'InvalidCommitError'
}

/** A header signed by a set that too little of the trusted set's power vouches for, even after bisection. */
export class UntrustedValidatorsError extends Error {
  name = 'UntrustedValidatorsError'
}

/** A peer's genesis for a pinned chain names another validator set than the one pinned. */
export class GenesisChangedError extends Error {
  name = 'GenesisChangedError'
}

export interface VotePayload { type: 'prevote' | 'precommit', height: number, round: number, value: string | null }
export interface SignedVote extends VotePayload { validator: string, bytes: Uint8Array }

/** A block's hash: sha-256 of its header's DAG-CBOR encoding (which commits to txs and state). */
export function blockHash (header: BlockHeader): string {
  return sha256Hex(dagCbor.encode(header))
}

export function validatorsHash (validators: Validator[]): string {
  return sha256Hex(dagCbor.encode(validators.map(v => [v.id, v.power])))
}

/** The validator set a map of stakes gives: power = stake / STAKE_PER_POWER, largest first. */
export function validatorsFromStakes (accounts: Iterable<[string, Pick<Account, 'stake'>]>): Validator[] {
  const out: Validator[] = []
  for (const [id, a] of accounts) {
    const power = a.stake / STAKE_PER_POWER
    if (power > 0n) out.push({ id, power: Number(power) })
  }
  out.sort((a, b) => b.power - a.power || (a.id < b.id ? -1 : 1))
  return out.slice(0, MAX_VALIDATORS)
}

/** Decodes and verifies a signed vote. */
export function decodeVote (bytes: Uint8Array): SignedVote {
  const r = verifyRecordSync<VotePayload>(bytes, { maxBytes: MAX_VOTE_BYTES, type: VOTE_TYPE })
  const p = r.record.payload
  if (p == null || (p.type !== 'prevote' && p.type !== 'precommit') || !Number.isSafeInteger(p.height) || !Number.isSafeInteger(p.round) || p.round < 0 ||
    !(p.value === null || (typeof p.value === 'string' && /^[0-9a-f]{64}$/.test(p.value))) || Object.keys(p).length !== 4) {
    throw new InvalidBlockError('malformed vote')
  }
  return { ...p, validator: r.record.author, bytes }
}

/** The validators whose precommits for `header` `commit` holds (every vote checked); InvalidCommitError for a bad one. */
export function commitSigners (header: BlockHeader, commit: Uint8Array[]): Set<string> {
  if (!Array.isArray(commit)) throw new InvalidCommitError('a commit is a list of votes')
  if (commit.length > MAX_COMMIT_VOTES) throw new InvalidCommitError(`a commit of ${commit.length} votes; at most ${MAX_COMMIT_VOTES}`)
  const hash = blockHash(header)
  const seen = new Set<string>()
  for (const bytes of commit) {
    let vote: SignedVote
    try {
      vote = decodeVote(bytes)
    } catch (err) {
      throw new InvalidCommitError(`a commit vote is invalid: ${(err as Error).message}`)
    }
    if (vote.type !== 'precommit' || vote.height !== header.height || vote.value !== hash) throw new InvalidCommitError('a commit vote is not a precommit for this block')
    seen.add(vote.validator)
  }
  return seen
}

/** The power of `validators` among `signers`, and their total. */
function powerOf (validators: Validator[], signers: Set<string>): { signed: number, total: number } {
  let signed = 0
  let total = 0
  for (const v of validators) {
    total += v.power
    if (signers.has(v.id)) signed += v.power
  }
  return { signed, total }
}

/**
 * Checks that `commit` holds precommits for `header` at its height from more than two thirds of
 * `validators`' power; InvalidCommitError otherwise (and for a signer outside the set).
 */
export function verifyHeaderCommit (header: BlockHeader, commit: Uint8Array[], validators: Validator[]): void {
  const signers = commitSigners(header, commit)
  const ids = new Set(validators.map(v => v.id))
  for (const s of signers) if (!ids.has(s)) throw new InvalidCommitError(`${s} is not a validator at ${header.height}`)
  const { signed, total } = powerOf(validators, signers)
  if (signed * 3 <= total * 2) throw new InvalidCommitError(`commit holds ${signed} of ${total} power; more than two thirds is needed`)
}

/**
 * The light client's check: trusting only the validator set, verify that `commit` signs `header`
 * (more than two thirds of the power) and that `proof` shows `key`'s value under the header's
 * state root. Returns the proven value's bytes, or null for a proven absence. Throws
 * InvalidCommitError or InvalidProofError; never trusts the peer that sent the three.
 */
export function verifyLightClientProof (header: BlockHeader, commit: Uint8Array[], validators: Validator[], key: string, proof: StateProof): Uint8Array | null {
  if (header == null || typeof header !== 'object') throw new InvalidCommitError('no header')
  if (header.validatorsHash !== validatorsHash(validators)) throw new InvalidCommitError('the header names another validator set')
  verifyHeaderCommit(header, commit, validators)
  if (proof?.root !== header.stateRoot) throw new InvalidProofError('the proof is for another state root')
  return verifyStateProof(header.stateRoot, key, proof)
}

/** Decodes a proven account value. */
export function decodeAccountValue (value: Uint8Array): Account {
  const [balance, nonce, stake] = dagCbor.decode(value) as [number | bigint, number, number | bigint]
  return { balance: BigInt(balance), nonce, stake: BigInt(stake) }
}

/** Decodes a proven asset or parcel owner. */
export function decodeOwner (value: Uint8Array): string {
  return (dagCbor.decode(value) as [string])[0]
}

/** A set the client trusts: the one that signs `height` (0: the genesis set, which signs height 1). */
export interface TrustedSet { chain: string, height: number, validators: Validator[] }

/** A header with its commit and the set a peer says signed it. */
export interface SignedHeader { header: BlockHeader, commit: Uint8Array[], validators: Validator[] }

/** The genesis set of a genesis file's accounts (stakes as decimal strings); GenesisChangedError when it is not the pinned one. */
export function genesisTrust (genesis: { chain: string, accounts: Array<{ id: string, stake?: string }> }, pinned?: string): TrustedSet {
  const validators = validatorsFromStakes(genesis.accounts.map(a => [a.id, { stake: BigInt(/^\d{1,19}$/.test(a.stake ?? '') ? a.stake! : '0') }]))
  if (validators.length === 0) throw new GenesisChangedError('the genesis names no validator')
  if (pinned != null && validatorsHash(validators) !== pinned) throw new GenesisChangedError(`the genesis of ${genesis.chain} names another validator set than the one this client pinned`)
  return { chain: genesis.chain, height: 0, validators }
}

/** Checks one signed header on its own: its chain and height, its set against its hash, and more than two thirds of that set. */
function checkSignedHeader (sh: SignedHeader, chain: string, height: number): void {
  const h = sh?.header
  if (h == null || h.chain !== chain || h.height !== height) throw new InvalidCommitError(`the peer's header is not ${chain}'s at height ${height}`)
  if (!Array.isArray(sh.validators) || sh.validators.length > MAX_VALIDATORS) throw new InvalidCommitError(`a set of ${String(sh.validators?.length)} validators; at most ${MAX_VALIDATORS}`)
  if (h.validatorsHash !== validatorsHash(sh.validators)) throw new InvalidCommitError('the header names another validator set')
  verifyHeaderCommit(h, sh.commit, sh.validators)
}

/**
 * Moves trust from `trusted` to the header at `height` (CometBFT's skipping verification with
 * bisection, trust level one third): returns the trusted set at `height` and its signed header.
 * `fetch` asks the (untrusted) peer; everything it returns is checked. Throws InvalidCommitError,
 * UntrustedValidatorsError, or what `fetch` throws.
 */
export async function verifyHeaderAt (trusted: TrustedSet, height: number, fetch: (height: number) => Promise<SignedHeader>): Promise<{ trusted: TrustedSet, signed: SignedHeader }> {
  let steps = 0
  const step = async (from: TrustedSet, to: number): Promise<{ trusted: TrustedSet, signed: SignedHeader }> => {
    if (++steps > MAX_LIGHT_CLIENT_STEPS) throw new UntrustedValidatorsError(`more than ${MAX_LIGHT_CLIENT_STEPS} headers to reach height ${to}`)
    const sh = await fetch(to)
    checkSignedHeader(sh, from.chain, to)
    const next = { trusted: { chain: from.chain, height: to, validators: sh.validators }, signed: sh }
    if (validatorsHash(sh.validators) === validatorsHash(from.validators)) return next
    const { signed, total } = powerOf(from.validators, commitSigners(sh.header, sh.commit))
    if (signed * 3 > total) return next
    if (to - from.height <= 1) throw new UntrustedValidatorsError(`the set that signed height ${to} holds ${signed} of ${total} of the trusted set's power; more than a third is needed`)
    const mid = await step(from, Math.floor((from.height + to) / 2))
    return await step(mid.trusted, to)
  }
  if (!Number.isSafeInteger(height) || height < 1) throw new InvalidCommitError(`no header at height ${height}`)
  return await step(trusted, height)
}
