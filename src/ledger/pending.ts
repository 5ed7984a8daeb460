/**
 * The fate of transactions, as `tx ID` tells it: those this peer accepted and answered "pending"
 * are written (synced) before that answer and kept until a block commits them (their record goes
 * in the block's own write) or they are refused, so a crash loses none (a restart submits them
 * again); and why refused ones were, the last MAX_REJECTED_KEPT of them, those we had answered
 * "pending" kept on disk too, so no transaction a user was told about ever turns "unknown".
 *
 * Concurrent acceptances share one synced write (group commit): a wallet's batch, or many API
 * requests at once, cost one sync, not one each.
 *
 * Keys in the `ledger` sublevel: `p/<tx id>` the bytes of a pending transaction of ours,
 * `x/<n>` a refusal `{ id, error, message }` (n counts up; the oldest go first).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { logger } from '@libp2p/logger'
import type { BytesSublevel } from '../store/store.ts'
import type { BatchOp } from './chain.ts'

const log = logger('peerverse:ledger')

/** Refused transactions whose reason is kept for txStatus (oldest forgotten first), in memory and on disk alike. */
export const MAX_REJECTED_KEPT = 10_000

export interface Rejection { error: string, message: string }

const pad = (n: number): string => String(n).padStart(12, '0')

export class TxBook {
  private readonly db: BytesSublevel
  /** Our pending transactions on disk, by id. */
  private readonly pending = new Map<string, Uint8Array>()
  /** Why transactions were refused, by id, oldest first (at most MAX_REJECTED_KEPT). */
  private readonly rejected = new Map<string, Rejection>()
  /** Refusals on disk: keys x/<first> .. x/<next - 1> (some may be gone). */
  private first = 0
  private next = 0
  private queue: Array<{ ops: BatchOp[], resolve: () => void, reject: (err: unknown) => void }> = []
  private writing = false

  constructor (db: BytesSublevel) {
    this.db = db
  }

  /** Pending transactions of ours on disk (read once at start: what a crash left). */
  get pendingCount (): number { return this.pending.size }

  /** Refusal reasons held. */
  get rejectedCount (): number { return this.rejected.size }

  /** Reads what a previous run left: pending transactions (returned, to submit again) and refusals. */
  async load (): Promise<Uint8Array[]> {
    for await (const [key, value] of this.db.iterator({ gte: 'p/', lt: 'p0' })) this.pending.set(key.slice(2), value)
    const stale: BatchOp[] = []
    const kept: Array<{ n: number, id: string, r: Rejection }> = []
    for await (const [key, value] of this.db.iterator({ gte: 'x/', lt: 'x0' })) {
      const n = Number(key.slice(2))
      try {
        const { id, error, message } = dagCbor.decode(value) as { id: string, error: string, message: string }
        kept.push({ n, id, r: { error: String(error), message: String(message) } })
      } catch {
        stale.push({ type: 'del', key })
      }
    }
    while (kept.length > MAX_REJECTED_KEPT) stale.push({ type: 'del', key: `x/${pad(kept.shift()!.n)}` })
    for (const k of kept) this.remember(k.id, k.r)
    this.first = kept[0]?.n ?? 0
    this.next = kept.length > 0 ? kept[kept.length - 1].n + 1 : 0
    if (stale.length > 0) await this.db.batch(stale).catch(() => {})
    return [...this.pending.values()]
  }

  isPending (id: string): boolean { return this.pending.has(id) }

  /** Our pending transactions' bytes (to send again while they wait). */
  pendingTxs (): Uint8Array[] { return [...this.pending.values()] }

  /** Writes accepted transactions (synced) before they are answered "pending"; throws the store's error. */
  async accept (txs: Array<{ id: string, bytes: Uint8Array }>): Promise<void> {
    const fresh = txs.filter(t => !this.pending.has(t.id))
    if (fresh.length === 0) return
    await this.write(fresh.map(t => ({ type: 'put', key: `p/${t.id}`, value: t.bytes })))
    for (const t of fresh) {
      this.pending.set(t.id, t.bytes)
      // A transaction refused once and accepted now (a replacement fee, a nonce no longer skipped) is pending again.
      this.rejected.delete(t.id)
    }
  }

  /** The operations that forget committed transactions of ours: they go in the block's own write. */
  committedOps (ids: Iterable<string>): BatchOp[] {
    const ops: BatchOp[] = []
    for (const id of ids) if (this.pending.has(id)) ops.push({ type: 'del', key: `p/${id}` })
    return ops
  }

  /** After the block's write: forgets committed transactions of ours. */
  committed (ids: Iterable<string>): void {
    for (const id of ids) this.pending.delete(id)
  }

  /**
   * Remembers why a transaction was refused. One of ours that was pending is written as refused
   * in place of its pending record (best effort: should that write fail, a restart submits it
   * again and it is refused again, for the same reason).
   */
  reject (id: string, err: { name: string, message: string }): void {
    const r = { error: err.name, message: err.message }
    this.remember(id, r)
    if (!this.pending.has(id)) return
    this.pending.delete(id)
    const n = this.next++
    const ops: BatchOp[] = [{ type: 'del', key: `p/${id}` }, { type: 'put', key: `x/${pad(n)}`, value: dagCbor.encode({ id, ...r }) }]
    while (this.next - this.first > MAX_REJECTED_KEPT) ops.push({ type: 'del', key: `x/${pad(this.first++)}` })
    this.write(ops).catch(e => { log('could not write the refusal of %s: %s', id, (e as Error).message) })
  }

  rejection (id: string): Rejection | undefined { return this.rejected.get(id) }

  private remember (id: string, r: Rejection): void {
    this.rejected.delete(id)
    this.rejected.set(id, r)
    if (this.rejected.size > MAX_REJECTED_KEPT) this.rejected.delete(this.rejected.keys().next().value as string)
  }

  /** One synced batch for every write queued meanwhile. */
  private async write (ops: BatchOp[]): Promise<void> {
    return await new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, resolve, reject })
      if (!this.writing) void this.flush()
    })
  }

  private async flush (): Promise<void> {
    this.writing = true
    while (this.queue.length > 0) {
      const group = this.queue
      this.queue = []
      try {
        await this.db.batch(group.flatMap(g => g.ops), { sync: true } as Record<string, unknown>)
        for (const g of group) g.resolve()
      } catch (err) {
        for (const g of group) g.reject(err)
      }
    }
    this.writing = false
  }
}
