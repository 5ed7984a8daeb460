/**
 * The ledger's rules: `applyBlock(state, block) -> { state, receipts }`, pure, synchronous and
 * deterministic. Accounts are did:keys holding a balance, a nonce and a stake; assets are unique
 * tokens pointing at content CIDs; land parcels are rectangles of a space's grid that may not
 * overlap. Fees go to the block's proposer. Stake changes the validator set two heights after the
 * block that made them (as CometBFT applies validator updates at H+2), so the set that signs a
 * height is always known a height ahead.
 *
 * A transaction that is well formed and signed for this chain but fails against the state (a
 * reused or skipped nonce, too little balance, an asset that is not the sender's) is kept in the
 * block with a failed receipt naming the reason, and changes nothing; a malformed or foreign
 * transaction makes the whole block invalid.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { createHash } from 'node:crypto'
import { MerkleTree, type StateProof } from './merkle.ts'
import { decodeTx, MAX_AMOUNT, type Tx } from './tx.ts'

/** Stake one unit of voting power needs. */
export const STAKE_PER_POWER = 1_000n
/** Heights between a stake change and its effect on the validator set. */
export const VALIDATOR_UPDATE_DELAY = 2
/** Transactions in one block at most. */
export const MAX_BLOCK_TXS = 10_000
/** Validators at most (by stake). */
export const MAX_VALIDATORS = 100

export interface Account { balance: bigint, nonce: number, stake: bigint }
export interface Asset { id: string, owner: string, minter: string, content: string, name: string, height: number }
export interface Parcel { id: string, owner: string, space: string, x: number, y: number, w: number, h: number }
export interface Validator { id: string, power: number }

export interface LedgerState {
  chain: string
  height: number
  /** Hash of the last applied block (null before the first). */
  lastBlock: string | null
  accounts: Map<string, Account>
  assets: Map<string, Asset>
  parcels: Map<string, Parcel>
  /** The set that signs height + 1. */
  validators: Validator[]
  /** Sets decided by stake changes, each applying from its height. */
  pending: Array<{ height: number, validators: Validator[] }>
}

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

export interface Block {
  header: BlockHeader
  txs: Uint8Array[]
}

export interface Receipt {
  tx: string
  sender: string
  height: number
  ok: boolean
  /** The error's name when not ok. */
  error?: string
  message?: string
  /** An asset or parcel this transaction created. */
  created?: string
}

export interface Genesis {
  chain: string
  time: number
  accounts: Array<{ id: string, balance: bigint, stake?: bigint }>
}

export class InvalidBlockError extends Error {
  name = 'InvalidBlockError'
}
export class NonceReusedError extends Error {
  name = 'NonceReusedError'
}
export class NonceGapError extends Error {
  name = 'NonceGapError'
}
export class InsufficientFundsError extends Error {
  name = 'InsufficientFundsError'
}
export class NotOwnerError extends Error {
  name = 'NotOwnerError'
}
export class NotFoundError extends Error {
  name = 'NotFoundError'
}
export class ParcelOverlapError extends Error {
  name = 'ParcelOverlapError'
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** The validator set a map of stakes gives: power = stake / STAKE_PER_POWER, largest first. */
export function validatorsFromStakes (accounts: Map<string, Account>): Validator[] {
  const out: Validator[] = []
  for (const [id, a] of accounts) {
    const power = a.stake / STAKE_PER_POWER
    if (power > 0n) out.push({ id, power: Number(power) })
  }
  out.sort((a, b) => b.power - a.power || (a.id < b.id ? -1 : 1))
  return out.slice(0, MAX_VALIDATORS)
}

export function validatorsHash (validators: Validator[]): string {
  return sha(dagCbor.encode(validators.map(v => [v.id, v.power])))
}

export function txRoot (ids: string[]): string {
  return sha(dagCbor.encode(ids))
}

/** The state at height 0. */
export function genesisState (genesis: Genesis): LedgerState {
  const accounts = new Map<string, Account>()
  for (const a of genesis.accounts) accounts.set(a.id, { balance: a.balance, nonce: 0, stake: a.stake ?? 0n })
  return { chain: genesis.chain, height: 0, lastBlock: null, accounts, assets: new Map(), parcels: new Map(), validators: validatorsFromStakes(accounts), pending: [] }
}

function leaves (state: LedgerState): Array<{ key: string, value: Uint8Array }> {
  const out: Array<{ key: string, value: Uint8Array }> = []
  for (const [id, a] of state.accounts) out.push({ key: `account/${id}`, value: dagCbor.encode([a.balance, a.nonce, a.stake]) })
  for (const [id, a] of state.assets) out.push({ key: `asset/${id}`, value: dagCbor.encode([a.owner, a.minter, a.content, a.name, a.height]) })
  for (const [id, p] of state.parcels) out.push({ key: `parcel/${id}`, value: dagCbor.encode([p.owner, p.space, p.x, p.y, p.w, p.h]) })
  return out
}

/** The Merkle tree over accounts, assets and parcels. */
export function stateTree (state: LedgerState): MerkleTree {
  return new MerkleTree(leaves(state))
}

export function stateRoot (state: LedgerState): string {
  return stateTree(state).root
}

/** A proof of one account, asset or parcel (key `account/<did>`, `asset/<id>`, `parcel/<id>`). */
export function proveKey (state: LedgerState, key: string): StateProof {
  return stateTree(state).prove(key)
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

function overlaps (a: Pick<Parcel, 'x' | 'y' | 'w' | 'h'>, b: Pick<Parcel, 'x' | 'y' | 'w' | 'h'>): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
}

function account (accounts: Map<string, Account>, id: string): Account {
  return accounts.get(id) ?? { balance: 0n, nonce: 0, stake: 0n }
}

/** Applies one transaction to the block's working state; throws a named error, having changed nothing, when it fails. */
function applyTx (s: LedgerState, tx: Tx, proposer: string, height: number): string | undefined {
  const p = tx.payload
  const from = account(s.accounts, tx.sender)
  if (p.nonce < from.nonce) throw new NonceReusedError(`nonce ${p.nonce} was used; next is ${from.nonce}`)
  if (p.nonce > from.nonce) throw new NonceGapError(`nonce ${p.nonce} skips ahead; next is ${from.nonce}`)
  const cost = p.fee + (p.kind === 'transfer' || p.kind === 'stake' ? p.amount : 0n)
  if (from.balance < cost) throw new InsufficientFundsError(`balance ${from.balance} is less than ${cost}`)
  let created: string | undefined
  const next: Account = { ...from, balance: from.balance - p.fee, nonce: from.nonce + 1 }
  switch (p.kind) {
    case 'transfer': {
      if (p.to !== tx.sender && account(s.accounts, p.to).balance + p.amount > MAX_AMOUNT) throw new InsufficientFundsError('recipient balance would overflow')
      next.balance -= p.amount
      s.accounts.set(tx.sender, next)
      const to = account(s.accounts, p.to)
      s.accounts.set(p.to, { ...to, balance: to.balance + p.amount })
      break
    }
    case 'mint':
      s.assets.set(tx.id, { id: tx.id, owner: tx.sender, minter: tx.sender, content: p.content.toString(), name: p.name, height })
      created = tx.id
      s.accounts.set(tx.sender, next)
      break
    case 'asset-transfer': {
      const asset = s.assets.get(p.asset)
      if (asset == null) throw new NotFoundError(`no asset ${p.asset}`)
      if (asset.owner !== tx.sender) throw new NotOwnerError(`asset ${p.asset} is not the sender's`)
      s.assets.set(p.asset, { ...asset, owner: p.to })
      s.accounts.set(tx.sender, next)
      break
    }
    case 'claim': {
      for (const other of s.parcels.values()) {
        if (other.space === p.space && overlaps(other, p)) throw new ParcelOverlapError(`overlaps parcel ${other.id}`)
      }
      s.parcels.set(tx.id, { id: tx.id, owner: tx.sender, space: p.space, x: p.x, y: p.y, w: p.w, h: p.h })
      created = tx.id
      s.accounts.set(tx.sender, next)
      break
    }
    case 'parcel-transfer': {
      const parcel = s.parcels.get(p.parcel)
      if (parcel == null) throw new NotFoundError(`no parcel ${p.parcel}`)
      if (parcel.owner !== tx.sender) throw new NotOwnerError(`parcel ${p.parcel} is not the sender's`)
      s.parcels.set(p.parcel, { ...parcel, owner: p.to })
      s.accounts.set(tx.sender, next)
      break
    }
    case 'stake':
      next.balance -= p.amount
      next.stake += p.amount
      s.accounts.set(tx.sender, next)
      break
    case 'unstake':
      if (from.stake < p.amount) throw new InsufficientFundsError(`stake ${from.stake} is less than ${p.amount}`)
      next.stake -= p.amount
      next.balance += p.amount
      s.accounts.set(tx.sender, next)
      break
  }
  const prop = account(s.accounts, proposer)
  s.accounts.set(proposer, { ...prop, balance: prop.balance + p.fee })
  return created
}

/**
 * Applies a block's transactions to a state and returns the new state and one receipt per
 * transaction; the input state is not changed. InvalidBlockError when the block cannot follow
 * the state (chain, height, parent, a malformed or foreign transaction). Does not check the
 * header's stateRoot (see checkBlock) or the block's signatures (the consensus does).
 */
export function applyBlock (state: LedgerState, block: Block): { state: LedgerState, receipts: Receipt[] } {
  const h = block.header
  if (h.chain !== state.chain) throw new InvalidBlockError(`block is for chain ${h.chain}`)
  if (h.height !== state.height + 1) throw new InvalidBlockError(`block ${h.height} does not follow ${state.height}`)
  if (h.prev !== state.lastBlock) throw new InvalidBlockError('block does not link to the last block')
  if (block.txs.length > MAX_BLOCK_TXS) throw new InvalidBlockError(`more than ${MAX_BLOCK_TXS} transactions`)
  const txs: Tx[] = []
  for (const bytes of block.txs) {
    try {
      txs.push(decodeTx(bytes, state.chain))
    } catch (err) {
      throw new InvalidBlockError(`transaction ${txs.length}: ${(err as Error).name}: ${(err as Error).message}`)
    }
  }
  if (new Set(txs.map(t => t.id)).size !== txs.length) throw new InvalidBlockError('a transaction appears twice')
  if (txRoot(txs.map(t => t.id)) !== h.txRoot) throw new InvalidBlockError('txRoot does not match the transactions')
  const next: LedgerState = {
    ...state,
    height: h.height,
    lastBlock: blockHash(h),
    accounts: new Map(state.accounts),
    assets: new Map(state.assets),
    parcels: new Map(state.parcels),
    pending: state.pending.filter(p => p.height > h.height + 1)
  }
  const receipts: Receipt[] = []
  let staked = false
  for (const tx of txs) {
    // applyTx checks everything before it changes anything, so a failed one leaves nothing behind.
    try {
      const created = applyTx(next, tx, h.proposer, h.height)
      receipts.push({ tx: tx.id, sender: tx.sender, height: h.height, ok: true, ...(created != null ? { created } : {}) })
      if (tx.payload.kind === 'stake' || tx.payload.kind === 'unstake') staked = true
    } catch (err) {
      receipts.push({ tx: tx.id, sender: tx.sender, height: h.height, ok: false, error: (err as Error).name, message: (err as Error).message })
    }
  }
  // The set for the next height: a pending set due then, else the current one.
  const due = state.pending.find(p => p.height === h.height + 1)
  next.validators = due?.validators ?? state.validators
  if (staked) next.pending = [...next.pending.filter(p => p.height !== h.height + VALIDATOR_UPDATE_DELAY), { height: h.height + VALIDATOR_UPDATE_DELAY, validators: validatorsFromStakes(next.accounts) }]
  return { state: next, receipts }
}

/** Applies a block and checks its state root; the form every node uses. */
export function checkBlock (state: LedgerState, block: Block): { state: LedgerState, receipts: Receipt[] } {
  const out = applyBlock(state, block)
  const root = stateRoot(out.state)
  if (root !== block.header.stateRoot) throw new InvalidBlockError(`state root ${block.header.stateRoot} does not match ${root}`)
  if (block.header.validatorsHash !== validatorsHash(state.validators)) throw new InvalidBlockError('validatorsHash does not name the signing set')
  return out
}

/** Builds the block a proposer offers: its transactions applied, its roots filled in. */
export function buildBlock (state: LedgerState, txs: Uint8Array[], proposer: string, time: number): { block: Block, state: LedgerState, receipts: Receipt[] } {
  const ids = txs.map(b => decodeTx(b, state.chain).id)
  const header: BlockHeader = {
    chain: state.chain,
    height: state.height + 1,
    time,
    prev: state.lastBlock,
    proposer,
    txRoot: txRoot(ids),
    stateRoot: '',
    validatorsHash: validatorsHash(state.validators)
  }
  const draft = applyBlock(state, { header, txs })
  header.stateRoot = stateRoot(draft.state)
  const block = { header, txs }
  return { block, ...checkBlock(state, block) }
}

/** A block's hash: sha-256 of its header's DAG-CBOR encoding (which commits to txs and state). */
export function blockHash (header: BlockHeader): string {
  return sha(dagCbor.encode(header))
}

/** Total of balances and stakes (conserved by every block). */
export function totalSupply (state: LedgerState): bigint {
  let n = 0n
  for (const a of state.accounts.values()) n += a.balance + a.stake
  return n
}

export { hex }
