/**
 * The ledger's rules: `applyBlock(state, block) -> { state, receipts }`, pure, synchronous and
 * deterministic. Accounts are did:keys holding a balance, a nonce and a stake; assets are unique
 * tokens pointing at content CIDs; land parcels are rectangles of a space's grid that may not
 * overlap, claimed by the space's owner, by those it granted land, or at its price (land.ts). Fees go to the block's proposer. Stake changes the validator set two heights after the
 * block that made them (as CometBFT applies validator updates at H+2), so the set that signs a
 * height is always known a height ahead.
 *
 * Which transactions a block may hold, and what a failing one costs (Ethereum's rule; Cosmos
 * charges fees the same way):
 * - A transaction is includable when its nonce is the sender's next one and the sender's balance
 *   covers its fee. A block holding one that is not (a reused or skipped nonce, a fee the sender
 *   cannot pay), or a malformed or foreign one, is invalid as a whole. `buildBlock` leaves such
 *   transactions out and says why (`skipped`).
 * - An includable transaction whose operation then fails (too little balance for the amount, an
 *   asset that is not the sender's, an overlapping parcel, ...) is kept with a failed receipt
 *   naming the reason: it pays its fee to the proposer and uses its nonce, and changes nothing
 *   else. So every transaction in a block costs its sender the fee: filling blocks with failing
 *   transactions is never free.
 *
 * Execution is memoizable: the functions take an optional `decode` (a VerifiedTxCache's) so a
 * node verifies each transaction's signature once, however many times it sees it in proposals.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { sha256Hex } from '../identity/hash.ts'
import { blockHash, InvalidBlockError, validatorsFromStakes, validatorsHash, type Account, type BlockHeader, type Validator } from './light.ts'
import { leafHash, MerkleTree, type Leaf, type StateProof } from './merkle.ts'
import { claimCost, grant, GRANT_FIELDS, revoke, setPrice, SPACE_FIELDS, spaceOf, type Grant, type LandSpace } from './land.ts'
import { decodeTx, MAX_AMOUNT, MAX_PARCEL_SIDE, type Tx, type TxDecoder } from './tx.ts'

/** Heights between a stake change and its effect on the validator set. */
export const VALIDATOR_UPDATE_DELAY = 2
/** Transactions in one block at most. */
export const MAX_BLOCK_TXS = 10_000
export type { Account, BlockHeader, Validator } from './light.ts'
export { blockHash, decodeAccountValue, decodeOwner, InvalidBlockError, MAX_VALIDATORS, STAKE_PER_POWER, validatorsFromStakes, validatorsHash } from './light.ts'

export interface Asset { id: string, owner: string, minter: string, content: string, name: string, height: number }
export interface Parcel { id: string, owner: string, space: string, x: number, y: number, w: number, h: number }

export interface LedgerState {
  chain: string
  height: number
  /** Hash of the last applied block (null before the first). */
  lastBlock: string | null
  accounts: Map<string, Account>
  assets: Map<string, Asset>
  parcels: Map<string, Parcel>
  /** Spaces proven by their signed record: owner, extent, price per cell (land.ts). */
  spaces: Map<string, LandSpace>
  /** Owners' grants of land, by the granting transaction's id. */
  grants: Map<string, Grant>
  /** The set that signs height + 1. */
  validators: Validator[]
  /** Sets decided by stake changes, each applying from its height. */
  pending: Array<{ height: number, validators: Validator[] }>
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

/** A transaction buildBlock left out, and why (the error's name and message). */
export interface Skipped {
  tx: string
  sender: string
  error: string
  message: string
}

export interface ApplyOptions {
  /** Decodes and verifies a transaction (default decodeTx); pass a VerifiedTxCache's `decode` to verify each one once. */
  decode?: TxDecoder
}

export interface Genesis {
  chain: string
  time: number
  accounts: Array<{ id: string, balance: bigint, stake?: bigint }>
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
const sha = (b: Uint8Array): string => sha256Hex(b)

export function txRoot (ids: string[]): string {
  return sha(dagCbor.encode(ids))
}

/** The state at height 0. */
export function genesisState (genesis: Genesis): LedgerState {
  const accounts = new Map<string, Account>()
  for (const a of genesis.accounts) accounts.set(a.id, { balance: a.balance, nonce: 0, stake: a.stake ?? 0n })
  return { chain: genesis.chain, height: 0, lastBlock: null, accounts, assets: new Map(), parcels: new Map(), spaces: new Map(), grants: new Map(), validators: validatorsFromStakes(accounts), pending: [] }
}

/**
 * Leaves by value object: the rules put a new object in the map for every change, so most leaves
 * of a state root are the last root's, and only what changed is encoded and hashed again. A hit
 * also compares the fields, so an object changed in place is never served a stale leaf.
 */
const leafCache = new WeakMap<object, { leaf: Required<Leaf>, kind: string, id: string, fields: unknown[] }>()

/** The fields each kind of value commits to, in order: its leaf's value is their DAG-CBOR array. */
const ACCOUNT_FIELDS = ['balance', 'nonce', 'stake'] as const
const ASSET_FIELDS = ['owner', 'minter', 'content', 'name', 'height'] as const
const PARCEL_FIELDS = ['owner', 'space', 'x', 'y', 'w', 'h'] as const

/**
 * The leaf `${kind}/${id}` of `obj`. A hit allocates nothing (the state root reads every value of
 * the state): it compares kind and id, usually the very same strings, and the fields one by one.
 */
function leaf<T extends object> (obj: T, kind: string, id: string, names: ReadonlyArray<keyof T>): Required<Leaf> {
  const hit = leafCache.get(obj)
  if (hit != null && hit.id === id && hit.kind === kind && hit.fields.length === names.length) {
    let same = true
    for (let i = 0; same && i < names.length; i++) same = hit.fields[i] === obj[names[i]]
    if (same) return hit.leaf
  }
  const key = `${kind}/${id}`
  const fields = names.map(n => obj[n])
  const value = dagCbor.encode(fields)
  const out = { key, value, hash: leafHash(key, value) }
  leafCache.set(obj, { leaf: out, kind, id, fields })
  return out
}

function leaves (state: LedgerState): Array<Required<Leaf>> {
  const out: Array<Required<Leaf>> = []
  for (const [id, a] of state.accounts) out.push(leaf(a, 'account', id, ACCOUNT_FIELDS))
  for (const [id, a] of state.assets) out.push(leaf(a, 'asset', id, ASSET_FIELDS))
  for (const [id, p] of state.parcels) out.push(leaf(p, 'parcel', id, PARCEL_FIELDS))
  for (const [id, sp] of state.spaces) out.push(leaf(sp, 'space', id, SPACE_FIELDS))
  for (const [id, g] of state.grants) out.push(leaf(g, 'grant', id, GRANT_FIELDS))
  return out
}

/**
 * Trees already built, to build the next from: the tree of each state rooted (so stateRoot and
 * proveKey on one state share it), and the last few built, one of which is usually the parent's
 * (a validator roots the parent, then each block it builds or checks on top of it). A block's
 * state differs from its parent's in a few hundred values, so its tree is the parent's with
 * those leaves and the nodes above them hashed again (see MerkleTree).
 * Which tree is reused never changes the result: the leaves are always taken from the maps again
 * (cheap, by the leaf cache) and compared with the old tree's, so a state whose maps were changed
 * after it was rooted gets the tree of what it holds now. Only hashes are reused, never a root.
 */
const treeOf = new WeakMap<LedgerState, MerkleTree>()
const recentTrees: MerkleTree[] = []
/** Trees kept besides treeOf's: the parent's, and those of the candidate blocks on top of it. */
const RECENT_TREES = 4

/** The Merkle tree over accounts, assets, parcels, spaces and grants. */
export function stateTree (state: LedgerState): MerkleTree {
  const input = leaves(state)
  const own = treeOf.get(state)
  const previous = own?.hasKeysOf(input) === true ? own : recentTrees.find(t => t.hasKeysOf(input))
  const tree = new MerkleTree(input, previous)
  treeOf.set(state, tree)
  // The new tree replaces this state's old one among the recent, so re-rooting one state (a proof
  // server) does not push out the others.
  const at = own != null ? recentTrees.indexOf(own) : -1
  if (at >= 0) recentTrees.splice(at, 1)
  recentTrees.unshift(tree)
  if (recentTrees.length > RECENT_TREES) recentTrees.pop()
  return tree
}

export function stateRoot (state: LedgerState): string {
  return stateTree(state).root
}

/** A proof of one account, asset, parcel, space or grant (key `account/<did>`, `asset/<id>`, `parcel/<id>`, `space/<id>`, `grant/<id>`). */
export function proveKey (state: LedgerState, key: string): StateProof {
  return stateTree(state).prove(key)
}

function overlaps (a: Pick<Parcel, 'x' | 'y' | 'w' | 'h'>, b: Pick<Parcel, 'x' | 'y' | 'w' | 'h'>): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
}

/**
 * Parcels by space and square of the grid (a side of MAX_PARCEL_SIDE cells, so a parcel lies in at
 * most four): an index of a state's `parcels` map, built once per map (a block's working state
 * copies the map, so once a block) and kept up to date by `claim`, the only transaction that adds
 * a parcel (a transfer changes its owner, never its place). So a claim looks only at the parcels
 * near it, never at every space's.
 */
const parcelIndex = new WeakMap<Map<string, Parcel>, Map<string, Parcel[]>>()

function squaresOf (space: string, r: Pick<Parcel, 'x' | 'y' | 'w' | 'h'>): string[] {
  const out: string[] = []
  for (let sx = Math.floor(r.x / MAX_PARCEL_SIDE); sx <= Math.floor((r.x + r.w - 1) / MAX_PARCEL_SIDE); sx++) {
    for (let sy = Math.floor(r.y / MAX_PARCEL_SIDE); sy <= Math.floor((r.y + r.h - 1) / MAX_PARCEL_SIDE); sy++) out.push(`${space}\n${sx}\n${sy}`)
  }
  return out
}

function parcelsNear (parcels: Map<string, Parcel>): Map<string, Parcel[]> {
  let index = parcelIndex.get(parcels)
  if (index == null) {
    index = new Map()
    for (const p of parcels.values()) indexParcel(index, p)
    parcelIndex.set(parcels, index)
  }
  return index
}

function indexParcel (index: Map<string, Parcel[]>, p: Parcel): void {
  for (const sq of squaresOf(p.space, p)) {
    const list = index.get(sq)
    if (list == null) index.set(sq, [p])
    else list.push(p)
  }
}

function account (accounts: Map<string, Account>, id: string): Account {
  return accounts.get(id) ?? { balance: 0n, nonce: 0, stake: 0n }
}

/**
 * Throws NonceReusedError, NonceGapError or InsufficientFundsError when `tx` cannot be in a block
 * after `s` at all: its nonce is not the sender's next, or the sender cannot pay its fee.
 */
function checkIncludable (s: LedgerState, tx: Tx): void {
  const p = tx.payload
  const from = account(s.accounts, tx.sender)
  if (p.nonce < from.nonce) throw new NonceReusedError(`nonce ${p.nonce} was used; next is ${from.nonce}`)
  if (p.nonce > from.nonce) throw new NonceGapError(`nonce ${p.nonce} skips ahead; next is ${from.nonce}`)
  if (from.balance < p.fee) throw new InsufficientFundsError(`balance ${from.balance} cannot pay the fee ${p.fee}`)
}

/** Carries out an includable transaction's operation; throws a named error, having changed nothing, when it fails. */
function execute (s: LedgerState, tx: Tx, height: number): string | undefined {
  const p = tx.payload
  const from = account(s.accounts, tx.sender)
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
      const { space, registered } = spaceOf(s, p.space, p.record)
      // What the owner is paid: 0 in one's own space or a grant, else its price per cell (bigint: no overflow).
      const price = claimCost(s, space, tx.sender, p)
      const near = parcelsNear(s.parcels)
      for (const sq of squaresOf(p.space, p)) {
        for (const other of near.get(sq) ?? []) if (overlaps(other, p)) throw new ParcelOverlapError(`overlaps parcel ${other.id}`)
      }
      if (price > 0n) {
        if (from.balance < cost + price) throw new InsufficientFundsError(`balance ${from.balance} is less than ${cost + price} (the fee and the land's price)`)
        if (account(s.accounts, space.owner).balance + price > MAX_AMOUNT) throw new InsufficientFundsError('the owner\'s balance would overflow')
        next.balance -= price
      }
      if (registered) s.spaces.set(space.id, space)
      const parcel = { id: tx.id, owner: tx.sender, space: p.space, x: p.x, y: p.y, w: p.w, h: p.h }
      s.parcels.set(tx.id, parcel)
      indexParcel(near, parcel)
      created = tx.id
      s.accounts.set(tx.sender, next)
      if (price > 0n) {
        const owner = account(s.accounts, space.owner)
        s.accounts.set(space.owner, { ...owner, balance: owner.balance + price })
      }
      break
    }
    case 'land-grant':
      grant(s, tx.id, tx.sender, p)
      created = tx.id
      s.accounts.set(tx.sender, next)
      break
    case 'land-revoke':
      revoke(s, tx.sender, p.grant)
      s.accounts.set(tx.sender, next)
      break
    case 'land-price':
      setPrice(s, tx.sender, p)
      s.accounts.set(tx.sender, next)
      break
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
  return created
}

/**
 * Applies an includable transaction (see checkIncludable) to the block's working state: its
 * operation, or, when that fails, only the fee and the nonce. The fee goes to the proposer.
 */
function applyTx (s: LedgerState, tx: Tx, proposer: string, height: number): Receipt {
  const p = tx.payload
  let receipt: Receipt
  try {
    // execute checks everything before it changes anything, so a failed one leaves nothing behind.
    const created = execute(s, tx, height)
    receipt = { tx: tx.id, sender: tx.sender, height, ok: true, ...(created != null ? { created } : {}) }
  } catch (err) {
    const from = account(s.accounts, tx.sender)
    s.accounts.set(tx.sender, { ...from, balance: from.balance - p.fee, nonce: from.nonce + 1 })
    receipt = { tx: tx.id, sender: tx.sender, height, ok: false, error: (err as Error).name, message: (err as Error).message }
  }
  const prop = account(s.accounts, proposer)
  s.accounts.set(proposer, { ...prop, balance: prop.balance + p.fee })
  return receipt
}

/** Decodes a block's transactions (InvalidBlockError for a malformed, foreign or repeated one). */
function decodeTxs (state: LedgerState, txs: Uint8Array[], decode: TxDecoder): Tx[] {
  if (txs.length > MAX_BLOCK_TXS) throw new InvalidBlockError(`more than ${MAX_BLOCK_TXS} transactions`)
  const out: Tx[] = []
  const ids = new Set<string>()
  for (const bytes of txs) {
    let tx: Tx
    try {
      tx = decode(bytes, state.chain)
    } catch (err) {
      throw new InvalidBlockError(`transaction ${out.length}: ${(err as Error).name}: ${(err as Error).message}`)
    }
    if (ids.has(tx.id)) throw new InvalidBlockError('a transaction appears twice')
    ids.add(tx.id)
    out.push(tx)
  }
  return out
}

/** The working state for the block at `height` on top of `state` (copies; the input is not changed). */
function begin (state: LedgerState, height: number): LedgerState {
  return {
    ...state,
    height,
    accounts: new Map(state.accounts),
    assets: new Map(state.assets),
    parcels: new Map(state.parcels),
    spaces: new Map(state.spaces),
    grants: new Map(state.grants),
    pending: state.pending.filter(p => p.height > height + 1)
  }
}

/** End of block: the set for the next height (a pending set due then, else the current one), and any stake change scheduled. */
function end (next: LedgerState, state: LedgerState, height: number, staked: boolean): void {
  const due = state.pending.find(p => p.height === height + 1)
  next.validators = due?.validators ?? state.validators
  if (staked) next.pending = [...next.pending.filter(p => p.height !== height + VALIDATOR_UPDATE_DELAY), { height: height + VALIDATOR_UPDATE_DELAY, validators: validatorsFromStakes(next.accounts) }]
}

const stakes = (tx: Tx, r: Receipt): boolean => r.ok && (tx.payload.kind === 'stake' || tx.payload.kind === 'unstake')

/**
 * Applies a block's transactions to a state and returns the new state and one receipt per
 * transaction; the input state is not changed. InvalidBlockError when the block cannot follow
 * the state (chain, height, parent, a malformed, foreign, repeated or not includable
 * transaction). Does not check the header's stateRoot (see checkBlock) or the block's signatures
 * (the consensus does).
 */
export function applyBlock (state: LedgerState, block: Block, options: ApplyOptions = {}): { state: LedgerState, receipts: Receipt[] } {
  const h = block.header
  if (h.chain !== state.chain) throw new InvalidBlockError(`block is for chain ${h.chain}`)
  if (h.height !== state.height + 1) throw new InvalidBlockError(`block ${h.height} does not follow ${state.height}`)
  if (h.prev !== state.lastBlock) throw new InvalidBlockError('block does not link to the last block')
  const txs = decodeTxs(state, block.txs, options.decode ?? decodeTx)
  if (txRoot(txs.map(t => t.id)) !== h.txRoot) throw new InvalidBlockError('txRoot does not match the transactions')
  const next = begin(state, h.height)
  next.lastBlock = blockHash(h)
  const receipts: Receipt[] = []
  let staked = false
  for (const [i, tx] of txs.entries()) {
    try {
      checkIncludable(next, tx)
    } catch (err) {
      throw new InvalidBlockError(`transaction ${i} (${tx.id}) cannot be included: ${(err as Error).name}: ${(err as Error).message}`)
    }
    const r = applyTx(next, tx, h.proposer, h.height)
    receipts.push(r)
    staked ||= stakes(tx, r)
  }
  end(next, state, h.height, staked)
  return { state: next, receipts }
}

/** Applies a block and checks its state root and signing set; the form every node uses. */
export function checkBlock (state: LedgerState, block: Block, options: ApplyOptions = {}): { state: LedgerState, receipts: Receipt[] } {
  if (block.header.validatorsHash !== validatorsHash(state.validators)) throw new InvalidBlockError('validatorsHash does not name the signing set')
  const out = applyBlock(state, block, options)
  const root = stateRoot(out.state)
  if (root !== block.header.stateRoot) throw new InvalidBlockError(`state root ${block.header.stateRoot} does not match ${root}`)
  return out
}

/**
 * Builds the block a proposer offers from candidate transactions (in order): each is applied
 * once, those that are not includable at that point are left out (`skipped`, with the reason),
 * and the roots are filled in. The returned state and receipts are what checkBlock gives for the
 * block. Throws InvalidBlockError for a malformed, foreign or repeated candidate (a caller bug:
 * the mempool holds none).
 */
export function buildBlock (state: LedgerState, txs: Uint8Array[], proposer: string, time: number, options: ApplyOptions = {}): { block: Block, state: LedgerState, receipts: Receipt[], skipped: Skipped[] } {
  const height = state.height + 1
  const candidates = decodeTxs(state, txs, options.decode ?? decodeTx)
  const next = begin(state, height)
  const receipts: Receipt[] = []
  const skipped: Skipped[] = []
  const included: Tx[] = []
  let staked = false
  for (const tx of candidates) {
    try {
      checkIncludable(next, tx)
    } catch (err) {
      skipped.push({ tx: tx.id, sender: tx.sender, error: (err as Error).name, message: (err as Error).message })
      continue
    }
    const r = applyTx(next, tx, proposer, height)
    receipts.push(r)
    included.push(tx)
    staked ||= stakes(tx, r)
  }
  end(next, state, height, staked)
  const header: BlockHeader = {
    chain: state.chain,
    height,
    time,
    prev: state.lastBlock,
    proposer,
    txRoot: txRoot(included.map(t => t.id)),
    stateRoot: stateRoot(next),
    validatorsHash: validatorsHash(state.validators)
  }
  next.lastBlock = blockHash(header)
  return { block: { header, txs: included.map(t => t.bytes) }, state: next, receipts, skipped }
}

/** Total of balances and stakes (conserved by every block). */
export function totalSupply (state: LedgerState): bigint {
  let n = 0n
  for (const a of state.accounts.values()) n += a.balance + a.stake
  return n
}

export { hex }
