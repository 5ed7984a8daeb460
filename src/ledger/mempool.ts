/**
 * The mempool: signed transactions waiting for a block, bounded in count, bytes and per sender,
 * ordered by fee (highest first) and, for one sender, by nonce, so a block never holds a sender's
 * nonce n+1 without n. When full, a transaction must pay more than the cheapest one held to get in.
 *
 * Admission (CometBFT's CheckTx): what costs nothing to check and says nothing of the sender's
 * account (the exact bytes already waiting, or already committed; the sender's limit) comes first,
 * so a flood of forgeries past a sender's limit costs no Ed25519 verification; then the signature
 * (once per transaction, through the decoder the node shares with block checks); then the nonce
 * (not used, and at most MAX_NONCE_AHEAD past the sender's next) and, when given
 * balances, that the sender can pay the fee at the committed state. So a forged transaction is
 * refused as forged, whatever nonce it names. `recheck` after each commit drops what the new state
 * makes unpayable, so transactions no block can hold do not sit in the pool.
 *
 * Order: by fee, highest first, and among equal fees by arrival, first come first served
 * (go-ethereum's price-and-time order), so no sender's long run holds back one that came earlier.
 *
 * Back-pressure, on the time a transaction waits rather than on a count (CoDel's lesson: bound the
 * queue's delay, not its length). A transaction submitted here (not one relayed by a peer) is
 * refused with MempoolFullError, unless it pays more than the cheapest one waiting:
 * - while one submitted here, which a block could take now (each sender's run of nonces from its
 *   next one: one waiting for a missing nonce is its sender's doing, and must not shut out
 *   everyone else) and which two committed blocks passed over, has waited longer than
 *   MEMPOOL_MAX_WAIT_MS: what this peer accepted is not getting into blocks in time, whatever the
 *   reason (a loaded machine, a slow disk, proposers that have not checked it yet);
 * - while peers' transactions have waited here unchecked longer than UNCHECKED_MAX_WAIT_MS: this
 *   peer cannot keep up with checking what the others accept, and they, under the same load,
 *   cannot keep up with what it accepts;
 * - past one full block of such transactions (MEMPOOL_BACKLOG_BLOCKS, by count or bytes), so a burst
 *   accepted at once is at most the next block.
 * So past what the chain commits the chain refuses at once, whatever its throughput on this
 * machine, and what it accepts is in one of the next blocks. A sender told "full" tries again after
 * the next block or pays more (CometBFT refuses with "mempool is full" past its size and
 * max_txs_bytes; a fee market is the price of a place). Peers' transactions are taken up to the
 * larger MAX_MEMPOOL_TXS / MAX_MEMPOOL_BYTES, so what another validator accepted still reaches every
 * proposer.
 */
import { InsufficientFundsError, NonceGapError } from './state.ts'
import { decodeTx, type Tx, type TxDecoder } from './tx.ts'

/** Transactions a block holds at most (by count). */
export const MAX_TXS_PER_BLOCK = 2_000
/**
 * Bytes of transactions a block holds at most: with the header and the encoding's framing (a few
 * bytes a transaction) under MAX_BLOCK_BYTES, so a proposal message stays under
 * MAX_PROPOSAL_MESSAGE_BYTES and a committed block with its commit under the gossip ceiling.
 */
export const MAX_BLOCK_TX_BYTES = 320 * 1024
/**
 * Blocks' worth of waiting transactions past which a new submission is refused (MempoolFullError);
 * see the top. One: a burst accepted at once (a gateway's batch, clients trying again together)
 * is at most the next block.
 */
export const MEMPOOL_BACKLOG_BLOCKS = 1
/** Transactions waiting past which a submission is refused: MEMPOOL_BACKLOG_BLOCKS full blocks by count. */
export const MAX_BACKLOG_TXS = MEMPOOL_BACKLOG_BLOCKS * MAX_TXS_PER_BLOCK
/** Bytes waiting past which a submission is refused: MEMPOOL_BACKLOG_BLOCKS full blocks by bytes. */
export const MAX_BACKLOG_BYTES = MEMPOOL_BACKLOG_BLOCKS * MAX_BLOCK_TX_BYTES
/**
 * A submission is refused (MempoolFullError) while one submitted here that a block could take and
 * a committed block passed over has waited longer than this: the chain is behind. Above two
 * heights' time at full load and the way to the proposer (a transaction that reached it just
 * after its proposal waits out that height and the next), below the second a payment should take
 * to be final.
 */
export const MEMPOOL_MAX_WAIT_MS = 600
/**
 * A transaction counts as passed over only if it came this long (ms) before the commit before the
 * last one: what came later may not have reached the proposer before it built the block (a batch
 * waits up to TX_BATCH_INTERVAL_MS, 50 ms, to go out, and is then checked there). Two blocks, by
 * two proposers, so one proposer that leaves transactions out (a faulty or byzantine one) does
 * not make every peer refuse.
 */
export const PASSED_OVER_MARGIN_MS = 100
/** A submission is refused (MempoolFullError) while peers' transactions have waited this long unchecked (AddOptions.uncheckedWaitMs). */
export const UNCHECKED_MAX_WAIT_MS = 200
/** How long the oldest wait, once measured (O(senders)), is reused for admission. */
export const WAIT_MEASURE_MS = 10
/** Transactions held at most (peers' included). */
export const MAX_MEMPOOL_TXS = 20_000
/** Bytes of transactions held at most. */
export const MAX_MEMPOOL_BYTES = 32 * 1024 * 1024
/** Transactions one sender may have waiting. */
export const MAX_TXS_PER_SENDER = 64
/**
 * How far past the sender's committed next nonce a transaction may be (Ethereum's txpool keeps such
 * "queued" ones likewise): one further ahead is refused with NonceGapError. Within it, one whose
 * earlier nonces are missing waits for them (they may be on their way through another peer), at
 * most GAP_LIFETIME_MS.
 */
export const MAX_NONCE_AHEAD = MAX_TXS_PER_SENDER
/** A transaction waiting for a missing earlier nonce of its sender is dropped (as NonceGapError) after this long. */
export const GAP_LIFETIME_MS = 10 * 60_000

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

/** A waiting transaction pushed out by another (one paying more for its nonce, or for room in a full pool). */
export class ReplacedTxError extends Error {
  name = 'ReplacedTxError'
}

export { NonceGapError }

export interface MempoolOptions {
  decode?: TxDecoder
  /** Whether these exact bytes were committed (their signature held): refused as stale with no signature check. */
  committed?: (id: string) => boolean
  /** Told of each waiting transaction another pushed out. */
  onReplaced?: (tx: Tx, err: ReplacedTxError) => void
}

export interface AddOptions {
  /** Submitted to this peer (not relayed by another): refused past the backlog limits (MAX_BACKLOG_TXS, MAX_BACKLOG_BYTES, MEMPOOL_MAX_WAIT_MS). */
  submitted?: boolean
  /**
   * Peers' transactions received and not checked yet (a loaded node's inbox): counted as work
   * ahead, so a node that cannot keep up with checking refuses rather than hides a queue.
   */
  unchecked?: number
  /** How long (ms) the oldest of them has waited (see UNCHECKED_MAX_WAIT_MS). */
  uncheckedWaitMs?: number
}

export class Mempool {
  private readonly byId = new Map<string, Tx>()
  private readonly bySender = new Map<string, Map<number, Tx>>()
  /** When each waiting transaction came (for GAP_LIFETIME_MS and MEMPOOL_MAX_WAIT_MS). */
  private readonly arrived = new Map<string, number>()
  /** The order transactions came in (ties of fee go first come, first served). */
  private readonly order = new Map<string, number>()
  private arrivals = 0
  /** The oldest ready transaction's wait, as last measured (see WAIT_MEASURE_MS). */
  private waitMeasured = { at: -Infinity, ms: 0 }
  /** When the last two blocks were committed (`prune`): only a transaction that came before both was passed over. */
  private lastCommitAt = -Infinity
  private commitBeforeAt = -Infinity
  /** Transactions submitted here (not relayed by a peer): their wait is what back-pressure reads. */
  private readonly own = new Set<string>()
  /** `cheapest()` as last found, or false once the pool changed. */
  private cheapestKept: Tx | undefined | false = false
  private bytes = 0
  /** Transactions a block could take now (see `backlog`), kept up to date on add; recounted after a removal. */
  private ready = { txs: 0, bytes: 0 }
  private readyStale = false
  private readonly chain: string
  private readonly decode: TxDecoder
  private readonly o: MempoolOptions

  constructor (chain: string, options: MempoolOptions = {}) {
    this.chain = chain
    this.decode = options.decode ?? decodeTx
    this.o = options
  }

  get size (): number { return this.byId.size }

  /** Bytes of the transactions held. */
  get byteSize (): number { return this.bytes }

  has (id: string): boolean { return this.byId.has(id) }

  get (id: string): Tx | undefined { return this.byId.get(id) }

  /** Whether a transaction of `sender` with `nonce` is waiting. */
  hasNonce (sender: string, nonce: number): boolean { return this.bySender.get(sender)?.has(nonce) === true }

  /** The nonce after `sender`'s run of waiting transactions from `next` (its committed next nonce). */
  pendingNonce (sender: string, next: number): number {
    const mine = this.bySender.get(sender)
    let n = next
    while (mine?.has(n) === true) n++
    return n
  }

  /**
   * Adds a transaction's bytes, given the sender's next nonce and (optionally) balance in the
   * committed state. Throws the decoding errors (InvalidSignatureError for a forgery),
   * DuplicateTxError, SenderLimitError, StaleNonceError, NonceGapError, InsufficientFundsError
   * (the balance cannot pay the fee) or MempoolFullError.
   */
  add (bytes: Uint8Array, nextNonce: (sender: string) => number, balanceOf?: (sender: string) => bigint, now = Date.now(), options: AddOptions = {}): Tx {
    // The checks that need no signature run before it (a refusal costs no Ed25519
    // verification); a transaction verified before skips that hook, and meets them here.
    let checked = false
    const tx = this.decode(bytes, this.chain, t => { this.unsigned(t); checked = true })
    if (!checked) this.unsigned(tx)
    this.signed(tx, nextNonce, balanceOf)
    const mine = this.bySender.get(tx.sender) ?? new Map<number, Tx>()
    const same = mine.get(tx.payload.nonce)
    const backlog = this.backlog(nextNonce)
    backlog.txs += options.unchecked ?? 0
    const waited = options.submitted === true && same == null ? this.oldestWait(nextNonce, now) : 0
    const unchecked = options.uncheckedWaitMs ?? 0
    if (options.submitted === true && same == null && (waited > MEMPOOL_MAX_WAIT_MS || unchecked > UNCHECKED_MAX_WAIT_MS || backlog.txs >= MAX_BACKLOG_TXS || backlog.bytes + bytes.length > MAX_BACKLOG_BYTES)) {
      // A place in the next blocks goes to a higher fee only: the cheapest waiting one makes room.
      const cheapest = this.cheapest()
      const why = waited > MEMPOOL_MAX_WAIT_MS
        ? `a transaction submitted here and ready for a block has waited ${Math.round(waited)} ms, over ${MEMPOOL_MAX_WAIT_MS}`
        : unchecked > UNCHECKED_MAX_WAIT_MS
          ? `peers' transactions have waited ${Math.round(unchecked)} ms to be checked, over ${UNCHECKED_MAX_WAIT_MS}`
          : `${backlog.txs} transactions, ${backlog.bytes} bytes wait for the next blocks`
      if (cheapest == null || cheapest.payload.fee >= tx.payload.fee) throw new MempoolFullError(`the chain is at capacity (${why}); try again after the next block, or pay a fee above ${cheapest?.payload.fee ?? 0n}`)
      this.remove(cheapest.id)
      this.o.onReplaced?.(cheapest, new ReplacedTxError(`pushed out of a full mempool by ${tx.id}, which pays a higher fee`))
    }
    if (this.byId.size >= MAX_MEMPOOL_TXS || this.bytes + bytes.length > MAX_MEMPOOL_BYTES) {
      const cheapest = this.cheapest()
      if (cheapest == null || cheapest.payload.fee >= tx.payload.fee) throw new MempoolFullError('the mempool is full; pay a higher fee')
      this.remove(cheapest.id)
      this.o.onReplaced?.(cheapest, new ReplacedTxError(`pushed out of a full mempool by ${tx.id}, which pays a higher fee`))
    }
    if (same != null) {
      this.remove(same.id)
      this.o.onReplaced?.(same, new ReplacedTxError(`replaced by ${tx.id}, which pays a higher fee for nonce ${tx.payload.nonce}`))
    }
    const runEnd = this.pendingNonce(tx.sender, nextNonce(tx.sender))
    mine.set(tx.payload.nonce, tx)
    this.bySender.set(tx.sender, mine)
    this.byId.set(tx.id, tx)
    this.arrived.set(tx.id, now)
    this.order.set(tx.id, this.arrivals++)
    if (options.submitted === true) this.own.add(tx.id)
    this.cheapestKept = false
    this.bytes += bytes.length
    // It extends its sender's run (and joins the ones that waited for it) only if it is the run's next nonce.
    if (!this.readyStale && tx.payload.nonce === runEnd) {
      for (let n = runEnd, t = mine.get(n); t != null; t = mine.get(++n)) { this.ready.txs++; this.ready.bytes += t.bytes.length }
    }
    return tx
  }

  /**
   * The work ahead: transactions (and their bytes) a block could take now, each sender's run of
   * consecutive nonces from its next one. Recounted (O(n)) only after a removal.
   */
  backlog (nextNonce: (sender: string) => number): { txs: number, bytes: number } {
    if (this.readyStale) {
      const ready = { txs: 0, bytes: 0 }
      for (const [sender, mine] of this.bySender) {
        for (let n = nextNonce(sender), t = mine.get(n); t != null; t = mine.get(++n)) { ready.txs++; ready.bytes += t.bytes.length }
      }
      this.ready = ready
      this.readyStale = false
    }
    return { ...this.ready }
  }

  /**
   * How long (ms) the transaction that has waited longest among those submitted here that a block
   * could take now (each sender's next one) and that committed blocks passed over (it came before
   * the last two commits) has waited, at `now`. A chain that commits nothing (a peer cut off from the
   * validators) has passed nothing over: its transactions wait as pending, and count only toward
   * the backlog's size. O(senders): measured at most every WAIT_MEASURE_MS (a removal measures again).
   */
  oldestWait (nextNonce: (sender: string) => number, now = Date.now()): number {
    if (now - this.waitMeasured.at < WAIT_MEASURE_MS && now >= this.waitMeasured.at) return this.waitMeasured.ms + (now - this.waitMeasured.at)
    let oldest = now
    for (const [sender, mine] of this.bySender) {
      const head = mine.get(nextNonce(sender))
      if (head == null || !this.own.has(head.id)) continue
      const at = this.arrived.get(head.id) ?? now
      if (at < oldest && at < this.commitBeforeAt - PASSED_OVER_MARGIN_MS) oldest = at
    }
    this.waitMeasured = { at: now, ms: now - oldest }
    return now - oldest
  }

  /**
   * The rules that need no signature and read no account: these exact bytes waiting or committed
   * already, the sender's limit. Throws their named errors.
   */
  private unsigned (tx: Tx): void {
    if (this.byId.has(tx.id)) throw new DuplicateTxError(`transaction ${tx.id} is already waiting`)
    // The same bytes as a committed transaction: its signature held, and its nonce is used.
    if (this.o.committed?.(tx.id) === true) throw new StaleNonceError(`transaction ${tx.id} is committed already; its nonce ${tx.payload.nonce} is used`)
    const mine = this.bySender.get(tx.sender)
    if (mine?.has(tx.payload.nonce) !== true && (mine?.size ?? 0) >= MAX_TXS_PER_SENDER) throw new SenderLimitError(`${tx.sender} has ${MAX_TXS_PER_SENDER} transactions waiting`)
  }

  /** The rules for a transaction whose signature holds: nonce (neither used nor skipped), a fee that can be paid, a replacement that pays more. */
  private signed (tx: Tx, nextNonce: (sender: string) => number, balanceOf?: (sender: string) => bigint): void {
    const next = nextNonce(tx.sender)
    const nonce = tx.payload.nonce
    if (nonce < next) throw new StaleNonceError(`nonce ${nonce} was used; next is ${next}`)
    if (nonce >= next + MAX_NONCE_AHEAD) throw new NonceGapError(`nonce ${nonce} skips too far ahead: next is ${next}, and at most ${MAX_NONCE_AHEAD - 1} past it may wait`)
    if (balanceOf != null && balanceOf(tx.sender) < tx.payload.fee) throw new InsufficientFundsError(`balance ${balanceOf(tx.sender)} cannot pay the fee ${tx.payload.fee}`)
    const same = this.bySender.get(tx.sender)?.get(nonce)
    if (same != null && same.payload.fee >= tx.payload.fee) throw new DuplicateTxError(`a transaction with nonce ${nonce} is already waiting; pay a higher fee to replace it`)
  }

  /**
   * The lowest fee waiting; among equals the latest to arrive (a sender's last nonce, as a rule:
   * pushing it out leaves no gap). O(n), kept until the pool changes: a refused submission changes
   * nothing, so a storm of them scans the pool once.
   */
  private cheapest (): Tx | undefined {
    if (this.cheapestKept !== false) return this.cheapestKept
    let out: Tx | undefined
    for (const tx of this.byId.values()) if (out == null || tx.payload.fee <= out.payload.fee) out = tx
    this.cheapestKept = out
    return out
  }

  remove (id: string): void {
    const tx = this.byId.get(id)
    if (tx == null) return
    this.readyStale = true
    this.waitMeasured.at = -Infinity
    this.cheapestKept = false
    this.byId.delete(id)
    this.arrived.delete(id)
    this.order.delete(id)
    this.own.delete(id)
    this.bytes -= tx.bytes.length
    const mine = this.bySender.get(tx.sender)
    mine?.delete(tx.payload.nonce)
    if (mine?.size === 0) this.bySender.delete(tx.sender)
  }

  /** After a commit (at `now`): drops what the block made stale (included, or nonce now used); returns what it dropped. */
  prune (nextNonce: (sender: string) => number, now = Date.now()): Tx[] {
    // A commit moves senders' next nonces: what a block could take is counted again.
    this.readyStale = true
    this.waitMeasured.at = -Infinity
    this.commitBeforeAt = this.lastCommitAt
    this.lastCommitAt = now
    const out: Tx[] = []
    for (const [sender, mine] of this.bySender) {
      const next = nextNonce(sender)
      for (const [nonce, tx] of mine) if (nonce < next) { out.push(tx); this.remove(tx.id) }
    }
    return out
  }

  /**
   * Drops what has waited longer than `lifetimeMs` for a missing earlier nonce of its sender;
   * returns what it dropped, with the nonce each was missing.
   */
  expireGaps (nextNonce: (sender: string) => number, now = Date.now(), lifetimeMs = GAP_LIFETIME_MS): Array<{ tx: Tx, missing: number }> {
    const out: Array<{ tx: Tx, missing: number }> = []
    for (const [sender, mine] of this.bySender) {
      const missing = this.pendingNonce(sender, nextNonce(sender))
      for (const [nonce, tx] of mine) {
        if (nonce > missing && now - (this.arrived.get(tx.id) ?? now) > lifetimeMs) out.push({ tx, missing })
      }
    }
    for (const { tx } of out) this.remove(tx.id)
    return out
  }

  /**
   * After a commit: drops every transaction of a sender whose next one cannot pay its fee at the
   * new state (no block can hold it, nor, for want of its nonce, the sender's later ones).
   * Returns what it dropped.
   */
  recheck (nextNonce: (sender: string) => number, balanceOf: (sender: string) => bigint): Tx[] {
    const out: Tx[] = []
    for (const [sender, mine] of this.bySender) {
      const head = mine.get(nextNonce(sender))
      if (head == null || balanceOf(sender) >= head.payload.fee) continue
      for (const tx of mine.values()) { out.push(tx); this.remove(tx.id) }
    }
    return out
  }

  /**
   * Transactions for the next block: each sender's run of consecutive nonces from its next one,
   * merged by fee (highest first; among equal fees, the one that came first), up to `max`
   * transactions and `maxBytes`. O(n log senders) with a heap of each sender's next one.
   */
  select (nextNonce: (sender: string) => number, max: number, maxBytes: number): Uint8Array[] {
    const heap = new HeadHeap()
    const order = (tx: Tx): number => this.order.get(tx.id) ?? 0
    for (const [sender, mine] of this.bySender) {
      const nonce = nextNonce(sender)
      const tx = mine.get(nonce)
      if (tx != null) heap.push({ tx, mine, order: order(tx) })
    }
    const out: Uint8Array[] = []
    let bytes = 0
    while (out.length < max) {
      const best = heap.peek()
      if (best == null || bytes + best.tx.bytes.length > maxBytes) break
      out.push(best.tx.bytes)
      bytes += best.tx.bytes.length
      const next = best.mine.get(best.tx.payload.nonce + 1)
      if (next != null) heap.replaceTop({ tx: next, mine: best.mine, order: order(next) })
      else heap.pop()
    }
    return out
  }
}

interface Head { tx: Tx, mine: Map<number, Tx>, order: number }

/** A binary max-heap of senders' next transactions: higher fee first, then the one that came first. */
class HeadHeap {
  private readonly items: Head[] = []

  private static before (a: Head, b: Head): boolean {
    return a.tx.payload.fee > b.tx.payload.fee || (a.tx.payload.fee === b.tx.payload.fee && a.order < b.order)
  }

  peek (): Head | undefined { return this.items[0] }

  push (h: Head): void {
    const a = this.items
    a.push(h)
    let i = a.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!HeadHeap.before(a[i], a[parent])) break
      ;[a[i], a[parent]] = [a[parent], a[i]]
      i = parent
    }
  }

  pop (): void {
    const a = this.items
    const last = a.pop()
    if (last == null || a.length === 0) return
    this.replaceTop(last)
  }

  replaceTop (h: Head): void {
    const a = this.items
    a[0] = h
    let i = 0
    while (true) {
      const l = 2 * i + 1
      const r = l + 1
      let top = i
      if (l < a.length && HeadHeap.before(a[l], a[top])) top = l
      if (r < a.length && HeadHeap.before(a[r], a[top])) top = r
      if (top === i) return
      ;[a[i], a[top]] = [a[top], a[i]]
      i = top
    }
  }
}
