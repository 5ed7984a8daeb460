/**
 * The mempool: signed transactions waiting for a block, bounded in count, bytes and per sender,
 * ordered by fee (highest first) and, for one sender, by nonce, so a block never holds a sender's
 * nonce n+1 without n. When full, a transaction must pay more than the cheapest one held to get in.
 */
import { decodeTx, type Tx } from './tx.ts'

/** Transactions held at most. */
export const MAX_MEMPOOL_TXS = 20_000
/** Bytes of transactions held at most. */
export const MAX_MEMPOOL_BYTES = 32 * 1024 * 1024
/** Transactions one sender may have waiting. */
export const MAX_TXS_PER_SENDER = 64

export class MempoolFullError extends Error {
  name = 'MempoolFullError'
}

export class SenderLimitError extends Error {
  name = 'SenderLimitError'
}

export class StaleNonceError extends Error {
  name = 'StaleNonceError'
}

export class DuplicateTxError extends Error {
  name = 'DuplicateTxError'
}

export class Mempool {
  private readonly byId = new Map<string, Tx>()
  private readonly bySender = new Map<string, Map<number, Tx>>()
  private bytes = 0
  private readonly chain: string

  constructor (chain: string) {
    this.chain = chain
  }

  get size (): number { return this.byId.size }

  has (id: string): boolean { return this.byId.has(id) }

  get (id: string): Tx | undefined { return this.byId.get(id) }

  /** Whether a transaction of `sender` with `nonce` is waiting. */
  hasNonce (sender: string, nonce: number): boolean { return this.bySender.get(sender)?.has(nonce) === true }

  /**
   * Adds a transaction's bytes, given the sender's next nonce in the committed state. Throws the
   * decoding errors, StaleNonceError, DuplicateTxError, SenderLimitError or MempoolFullError.
   */
  add (bytes: Uint8Array, nextNonce: (sender: string) => number): Tx {
    const tx = decodeTx(bytes, this.chain)
    if (this.byId.has(tx.id)) throw new DuplicateTxError(`transaction ${tx.id} is already waiting`)
    if (tx.payload.nonce < nextNonce(tx.sender)) throw new StaleNonceError(`nonce ${tx.payload.nonce} was used; next is ${nextNonce(tx.sender)}`)
    const mine = this.bySender.get(tx.sender) ?? new Map<number, Tx>()
    const same = mine.get(tx.payload.nonce)
    if (same != null && same.payload.fee >= tx.payload.fee) throw new DuplicateTxError(`a transaction with nonce ${tx.payload.nonce} is already waiting; pay a higher fee to replace it`)
    if (same == null && mine.size >= MAX_TXS_PER_SENDER) throw new SenderLimitError(`${tx.sender} has ${MAX_TXS_PER_SENDER} transactions waiting`)
    if (this.byId.size >= MAX_MEMPOOL_TXS || this.bytes + bytes.length > MAX_MEMPOOL_BYTES) {
      const cheapest = this.cheapest()
      if (cheapest == null || cheapest.payload.fee >= tx.payload.fee) throw new MempoolFullError('the mempool is full; pay a higher fee')
      this.remove(cheapest.id)
    }
    if (same != null) this.remove(same.id)
    mine.set(tx.payload.nonce, tx)
    this.bySender.set(tx.sender, mine)
    this.byId.set(tx.id, tx)
    this.bytes += bytes.length
    return tx
  }

  private cheapest (): Tx | undefined {
    let out: Tx | undefined
    for (const tx of this.byId.values()) if (out == null || tx.payload.fee < out.payload.fee) out = tx
    return out
  }

  remove (id: string): void {
    const tx = this.byId.get(id)
    if (tx == null) return
    this.byId.delete(id)
    this.bytes -= tx.bytes.length
    const mine = this.bySender.get(tx.sender)
    mine?.delete(tx.payload.nonce)
    if (mine?.size === 0) this.bySender.delete(tx.sender)
  }

  /** Drops what a committed block made stale (included, or nonce now used). */
  prune (nextNonce: (sender: string) => number): void {
    for (const [sender, mine] of this.bySender) {
      const next = nextNonce(sender)
      for (const [nonce, tx] of mine) if (nonce < next) this.remove(tx.id)
    }
  }

  /**
   * Transactions for the next block: each sender's run of consecutive nonces from its next one,
   * merged by fee (highest first), up to `max` transactions and `maxBytes`.
   */
  select (nextNonce: (sender: string) => number, max: number, maxBytes: number): Uint8Array[] {
    const heads: Array<{ sender: string, nonce: number }> = []
    for (const sender of this.bySender.keys()) heads.push({ sender, nonce: nextNonce(sender) })
    const out: Uint8Array[] = []
    let bytes = 0
    while (out.length < max) {
      let best = -1
      let bestTx: Tx | undefined
      for (let i = 0; i < heads.length; i++) {
        const tx = this.bySender.get(heads[i].sender)?.get(heads[i].nonce)
        if (tx != null && (bestTx == null || tx.payload.fee > bestTx.payload.fee)) { best = i; bestTx = tx }
      }
      if (bestTx == null || bytes + bestTx.bytes.length > maxBytes) break
      out.push(bestTx.bytes)
      bytes += bestTx.bytes.length
      heads[best].nonce++
    }
    return out
  }
}
