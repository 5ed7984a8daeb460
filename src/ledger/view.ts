/**
 * What the ledger answers from its committed state and its records: balances, assets, parcels,
 * proofs, blocks, evidence and each transaction's fate. The service (service.ts) builds on it and
 * moves the state on; this part only reads.
 */
import { TypedEventEmitter } from 'main-event'
import { ChainStore, decodeVote, type StoredBlock } from './chain.ts'
import { grantsIn, type Grant, type LandSpace } from './land.ts'
import { Mempool } from './mempool.ts'
import type { StateProof } from './merkle.ts'
import { TxBook } from './pending.ts'
import { genesisState, proveKey, stateRoot, validatorsHash, type Genesis, type LedgerState, type Parcel, type Receipt, type Validator } from './state.ts'
import { VerifiedTxCache } from './tx.ts'
import type { LedgerComponents, LedgerEvents, Parcels } from './types.ts'

export type TxStatus =
  | { status: 'pending' }
  | { status: 'committed', height: number, receipt: Receipt }
  | { status: 'rejected', error: string, message: string }
  | { status: 'unknown' }

/** Validator sets remembered for light clients (each change of the set is one; the oldest are forgotten first). */
export const MAX_VALIDATOR_SETS_KEPT = 1024

export abstract class LedgerView extends TypedEventEmitter<LedgerEvents> implements Parcels {
  state: LedgerState
  readonly genesis: Genesis
  /** Every transaction's signature is checked once here, whoever asks (mempool, proposal, commit). */
  readonly txCache: VerifiedTxCache
  readonly mempool: Mempool
  protected readonly chain: ChainStore
  /** Our pending transactions (on disk) and why refused ones were. */
  protected readonly book: TxBook
  /** Each validator set and the first height it signs (a light client asks which set signed a height). */
  private readonly sets: Array<{ from: number, hash: string, validators: Validator[] }> = []

  constructor (components: LedgerComponents) {
    super()
    this.genesis = components.genesis
    this.state = genesisState(components.genesis)
    this.noteSigners()
    this.chain = new ChainStore(components.store)
    this.book = new TxBook(components.store)
    this.txCache = new VerifiedTxCache()
    this.mempool = new Mempool(components.genesis.chain, {
      decode: this.txCache.decode,
      committed: this.txCache.isCommitted,
      // Pushed out by a higher fee: refused, and told so.
      onReplaced: (tx, err) => { this.book.reject(tx.id, err) }
    })
  }

  get chainId (): string { return this.genesis.chain }

  nextNonce (sender: string): number {
    return this.state.accounts.get(sender)?.nonce ?? 0
  }

  protected balanceOf (sender: string): bigint {
    return this.state.accounts.get(sender)?.balance ?? 0n
  }

  /** The next nonce for a new transaction of `sender`: past any waiting in the mempool. */
  protected pendingNonce (sender: string): number {
    return this.mempool.pendingNonce(sender, this.nextNonce(sender))
  }

  async txStatus (id: string): Promise<TxStatus> {
    const receipt = await this.chain.receipt(id)
    if (receipt != null) return receipt.ok ? { status: 'committed', height: receipt.height, receipt } : { status: 'rejected', error: receipt.error ?? 'Error', message: receipt.message ?? '' }
    if (this.mempool.has(id) || this.book.isPending(id)) return { status: 'pending' }
    const r = this.book.rejection(id)
    return r != null ? { status: 'rejected', ...r } : { status: 'unknown' }
  }

  balance (did: string): { balance: bigint, nonce: number, stake: bigint } {
    return this.state.accounts.get(did) ?? { balance: 0n, nonce: 0, stake: 0n }
  }

  assetsOf (did: string): Array<{ id: string, name: string, content: string, owner: string }> {
    return [...this.state.assets.values()].filter(a => a.owner === did)
  }

  parcelsOf (did: string): Parcel[] {
    return [...this.state.parcels.values()].filter(p => p.owner === did)
  }

  /** The land parcels of one space (spaces ask this to decide who may build where). */
  parcelsIn (space: string): Parcel[] {
    return [...this.state.parcels.values()].filter(p => p.space === space)
  }

  /** A space the ledger knows (proven by its record): owner, extent, price per cell; undefined if none. */
  landSpace (space: string): LandSpace | undefined {
    return this.state.spaces.get(space)
  }

  /** The owner's grants of land in one space. */
  grantsIn (space: string): Grant[] {
    return grantsIn(this.state, space)
  }

  /** The grants made to one did, in every space. */
  grantsTo (did: string): Grant[] {
    return [...this.state.grants.values()].filter(g => g.grantee === did)
  }

  /** The current head with a proof of one key against its state root. */
  prove (key: string): { height: number, stateRoot: string, proof: StateProof } {
    return { height: this.state.height, stateRoot: stateRoot(this.state), proof: proveKey(this.state, key) }
  }

  /** Remembers the set that signs the next height; call after each block is applied. */
  protected noteSigners (): void {
    const { height, validators } = this.state
    const hash = validatorsHash(validators)
    if (this.sets.at(-1)?.hash === hash) return
    this.sets.push({ from: height + 1, hash, validators })
    if (this.sets.length > MAX_VALIDATOR_SETS_KEPT) this.sets.shift()
  }

  /** The validator set that signs `height` (up to the next height), or undefined when not known here. */
  validatorsAt (height: number): Validator[] | undefined {
    if (!Number.isSafeInteger(height) || height < 1 || height > this.state.height + 1 || this.sets.length === 0 || height < this.sets[0].from) return undefined
    for (let i = this.sets.length - 1; i >= 0; i--) if (this.sets[i].from <= height) return this.sets[i].validators
    return undefined
  }

  async block (height: number): Promise<StoredBlock | undefined> {
    return await this.chain.getBlock(height)
  }

  /** Stored evidence of double votes: who signed two different votes for one (height, round, type). */
  async evidence (): Promise<Array<{ validator: string, height: number, round: number, type: 'prevote' | 'precommit', values: Array<string | null> }>> {
    return (await this.chain.evidence()).map(([a, b]) => {
      const va = decodeVote(a)
      const vb = decodeVote(b)
      return { validator: va.validator, height: va.height, round: va.round, type: va.type, values: [va.value, vb.value] }
    })
  }
}
