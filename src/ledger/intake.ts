/**
 * How transactions come in from this peer's user: signed with the next nonce (ours, or the
 * devnet faucet's), checked into the mempool, written as pending (synced, pending.ts) before the
 * answer "pending", and sent on; after a restart or a halt, what was pending goes in again. While
 * the ledger cannot write (halt.ts) every submission is refused with LedgerHaltedError: nothing is
 * answered "pending" that a crash could lose. The service (service.ts) builds on this and supplies
 * how a transaction is sent and what a halt does to consensus.
 */
import { logger } from '@libp2p/logger'
import { recordId } from '../identity/record.ts'
import { InvalidEvidenceError, type DoubleVote } from './chain.ts'
import { NotValidatorError } from './consensus-channel.ts'
import { FAUCET_GRANT, faucetDid, faucetKey } from './genesis.ts'
import { Halt } from './halt.ts'
import { GAP_LIFETIME_MS, StaleNonceError } from './mempool.ts'
import { MAX_TX_BYTES, signTx, type Tx, type TxOp } from './tx.ts'
import type { LedgerComponents } from './types.ts'
import { LedgerView } from './view.ts'
import { evidenceHeightKept, MAX_EVIDENCE_AGE_HEIGHTS } from './wire.ts'

const log = logger('peerverse:ledger')

export abstract class LedgerIntake extends LedgerView {
  /** Our user: signs our transactions. */
  protected readonly identity: LedgerComponents['identity']
  /** Whether we cannot write, and the timer that tries again. */
  protected readonly halt: Halt

  constructor (components: LedgerComponents, persistRetryMs: number) {
    super(components)
    this.identity = components.identity
    this.halt = new Halt(persistRetryMs, () => { this.retryWrites() })
  }

  /** Sends one of our transactions to peers (batched). */
  protected abstract send (bytes: Uint8Array): void
  /** A write failed: stop what went on from memory (halt.ts). */
  protected abstract enterHalt (err: unknown): void
  /** The halt's timer: try to write again. */
  protected abstract retryWrites (): void
  /** Transactions were added to the mempool (a proposer waiting for some may go). */
  protected abstract onTxs (): void

  /** Runs a write; if it fails, halts (see halt.ts) and throws LedgerHaltedError. */
  protected async persist (write: () => Promise<void>): Promise<void> {
    try {
      await write()
    } catch (err) {
      this.enterHalt(err)
      throw this.halt.error()
    }
  }

  /**
   * Our pending transactions into the mempool (each sender's in nonce order) and out to peers
   * again; one that is refused now (a double spend that lost, say) is recorded as refused.
   */
  protected resubmit (txs: Uint8Array[]): void {
    const decoded: Tx[] = []
    for (const bytes of txs) {
      try {
        decoded.push(this.txCache.decode(bytes, this.chainId))
      } catch (err) {
        this.book.reject(recordId(bytes), err as Error)
      }
    }
    decoded.sort((a, b) => a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : a.payload.nonce - b.payload.nonce)
    for (const tx of decoded) {
      if (!this.mempool.has(tx.id)) {
        try {
          this.mempool.add(tx.bytes, s => this.nextNonce(s), s => this.balanceOf(s))
        } catch (err) {
          this.book.reject(tx.id, err as Error)
          continue
        }
      }
      this.send(tx.bytes)
    }
    this.onTxs()
  }

  /**
   * After a commit (`included`: its transactions' ids): what the block made invalid leaves the
   * mempool and is refused, with its reason (a double spend's loser, a fee the sender can no
   * longer pay, a nonce gap that waited too long).
   */
  protected settleMempool (included: Set<string>): void {
    for (const tx of this.mempool.prune(s => this.nextNonce(s))) {
      if (!included.has(tx.id)) this.book.reject(tx.id, new StaleNonceError(`nonce ${tx.payload.nonce} of ${tx.sender} was used by another transaction, committed at height ${this.state.height}`))
    }
    for (const tx of this.mempool.recheck(s => this.nextNonce(s), s => this.balanceOf(s))) {
      this.book.reject(tx.id, { name: 'InsufficientFundsError', message: `balance ${this.balanceOf(tx.sender)} cannot pay the fee of ${tx.sender}'s next transaction` })
    }
    for (const { tx, missing } of this.mempool.expireGaps(s => this.nextNonce(s))) {
      this.book.reject(tx.id, { name: 'NonceGapError', message: `nonce ${tx.payload.nonce} waited ${GAP_LIFETIME_MS / 60_000} minutes for nonce ${missing}, which never came` })
    }
  }

  /** Peers' transactions received and not checked yet, and how long the oldest has waited (ms): read on submission (mempool.ts). */
  protected unchecked (): { unchecked: number, uncheckedWaitMs: number } { return { unchecked: 0, uncheckedWaitMs: 0 } }

  /** Whether `did` is one of the validators of the height being decided. */
  protected validates (did: string): boolean { return this.state.validators.some(v => v.id === did) }

  /**
   * Evidence of a double vote from a peer: kept (once) when the equivocator is one of our
   * validators and the height is recent (MAX_EVIDENCE_AGE_HEIGHTS); InvalidEvidenceError otherwise.
   */
  protected async takeEvidence (e: DoubleVote): Promise<void> {
    if (!this.validates(e.validator)) throw new InvalidEvidenceError(`${e.validator} is not a validator`)
    if (!evidenceHeightKept(e.height, this.state.height)) throw new InvalidEvidenceError(`evidence for height ${e.height} is not within ${MAX_EVIDENCE_AGE_HEIGHTS} heights of ${this.state.height}`)
    if (!await this.chain.putEvidence(e.a.bytes, e.b.bytes)) return
    log('evidence of a double %s by %s at %d/%d', e.type, e.validator, e.height, e.round)
    this.safeDispatchEvent('ledger:evidence', { detail: { validator: e.validator, height: e.height, round: e.round } })
  }

  /** Signs a transaction of ours with the next nonce and submits it. */
  async submitOwn (op: TxOp, fee = 1n): Promise<Tx> {
    const { did, key } = this.identity
    const tx = await signTx(key, { chain: this.chainId, nonce: this.pendingNonce(did), fee, ...op } as never)
    await this.submit(tx.bytes)
    return tx
  }

  /** On a devnet: a faucet transfer to `to`, signed with the chain's public faucet key. */
  async faucet (to: string, amount = FAUCET_GRANT): Promise<Tx> {
    const faucet = faucetDid(this.chainId)
    if (!this.state.accounts.has(faucet)) throw new NotValidatorError('this chain has no faucet (only devnets do)')
    const tx = await signTx(faucetKey(this.chainId), { chain: this.chainId, nonce: this.pendingNonce(faucet), fee: 1n, kind: 'transfer', to, amount })
    await this.submit(tx.bytes)
    return tx
  }

  /**
   * Adds a signed transaction to the mempool, writes it (synced) as pending, and sends it on
   * (batched). Throws the mempool's named errors, or LedgerHaltedError while the ledger cannot write.
   */
  async submit (bytes: Uint8Array): Promise<Tx> {
    const [r] = await this.submitMany([bytes])
    if (r instanceof Error) throw r
    return r
  }

  /**
   * submit() for many transactions, checked in turn (yielding every `sliceMs`, so consensus
   * messages are not held up) and written in one synced write: a result for each, a Tx or the
   * named error that refused it.
   */
  async submitMany (list: Uint8Array[], sliceMs = Infinity): Promise<Array<Tx | Error>> {
    const results: Array<Tx | Error> = []
    const accepted: Tx[] = []
    let slice = performance.now()
    for (const bytes of list) {
      if (performance.now() - slice >= sliceMs) {
        await new Promise(resolve => setImmediate(resolve))
        slice = performance.now()
      }
      if (this.halt.halted) { results.push(this.halt.error()); continue }
      try {
        const tx = this.mempool.add(bytes, s => this.nextNonce(s), s => this.balanceOf(s), Date.now(), { submitted: true, ...this.unchecked() })
        accepted.push(tx)
        results.push(tx)
      } catch (err) {
        // Its id is the CID of its bytes: no second decode (nor a signature check the refusal spared).
        if (bytes instanceof Uint8Array && bytes.length <= MAX_TX_BYTES) this.book.reject(recordId(bytes), err as Error)
        results.push(err as Error)
      }
    }
    if (accepted.length === 0) return results
    try {
      // "Pending" is answered only once it is on disk: a crash then loses none of them.
      await this.persist(async () => { await this.book.accept(accepted) })
    } catch (err) {
      for (const tx of accepted) this.mempool.remove(tx.id)
      return results.map(r => r instanceof Error ? r : err as Error)
    }
    for (const tx of accepted) this.send(tx.bytes)
    this.onTxs()
    return results
  }
}
