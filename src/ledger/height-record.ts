/**
 * What happened at each height, as this validator saw it: how many rounds it took, which steps
 * timed out, the decided proposal's size, how long building and checking blocks took, how full the
 * mempool was when the height started, and the time from the decided proposal to the commit.
 * Carried in the `ledger:block` event, so a benchmark or an operator can tell a slow height's
 * cause (a proposal that came after timeout_propose, votes that did not come, a block too large
 * to check in time) from the records alone, whatever the load on the machine.
 */
import type { TimeoutStep } from './consensus-types.ts'

export interface HeightRecord {
  /** Rounds used: the decision's round + 1 (1 means no round failed). */
  rounds: number
  /** Timeouts that fired at this height, by step. */
  timeouts: Record<TimeoutStep, number>
  /** The decided block: its transactions and the proposal message's bytes (0 when not seen as a proposal, e.g. our own). */
  txs: number
  proposalBytes: number
  /** Milliseconds from the height's start to the decided proposal's arrival (or our building it). */
  proposalAtMs: number
  /** Milliseconds from the decided proposal to the commit. */
  proposalToCommitMs: number
  /** Milliseconds from the height's start to the commit. */
  heightMs: number
  /** Milliseconds spent building our proposals and checking others' at this height. */
  buildMs: number
  checkMs: number
  /** Transactions in the mempool when the height started. */
  mempool: number
  /** Proposals seen (ours and others') at this height, by round: `round:txs`. */
  proposals: string[]
  /** Longest at this height, in milliseconds: a step of the service's queue, a wait in that queue, a synced write. */
  slowest: Record<Slow, number>
}

export type Slow = 'step' | 'wait' | 'write'

/** Records of the last heights kept (for status). */
export const MAX_HEIGHT_RECORDS = 32

export class HeightRecorder {
  private startedAt = 0
  private mempool = 0
  private timeouts: Record<TimeoutStep, number> = { propose: 0, prevote: 0, precommit: 0 }
  private buildMs = 0
  private checkMs = 0
  private slowest: Record<Slow, number> = { step: 0, wait: 0, write: 0 }
  /** When each proposal (by value) was first seen, its size and round. */
  private readonly seen = new Map<string, { at: number, txs: number, bytes: number, round: number }>()
  /** The last MAX_HEIGHT_RECORDS heights' records, oldest first. */
  readonly recent: Array<HeightRecord & { height: number }> = []

  /** A new height starts; `mempool` transactions wait. */
  start (mempool: number, now = performance.now()): void {
    this.startedAt = now
    this.mempool = mempool
    this.timeouts = { propose: 0, prevote: 0, precommit: 0 }
    this.buildMs = 0
    this.checkMs = 0
    this.slowest = { step: 0, wait: 0, write: 0 }
    this.seen.clear()
  }

  timeout (step: TimeoutStep): void { this.timeouts[step]++ }

  /** Something took `ms` (kept if the longest of its kind at this height). */
  took (kind: Slow, ms: number): void { if (ms > this.slowest[kind]) this.slowest[kind] = ms }

  /** A proposal seen (built by us, `bytes` 0, or received), and how long building or checking it took. */
  proposal (value: string, round: number, txs: number, bytes: number, ms: number, built: boolean, now = performance.now()): void {
    if (built) this.buildMs += ms
    else this.checkMs += ms
    if (!this.seen.has(value)) this.seen.set(value, { at: now, txs, bytes, round })
  }

  /** The height committed `value`, decided at `round`. */
  commit (height: number, value: string, round: number, txs: number, now = performance.now()): HeightRecord {
    const p = this.seen.get(value)
    const at = p?.at ?? now
    const record: HeightRecord = {
      rounds: round + 1,
      timeouts: { ...this.timeouts },
      txs,
      proposalBytes: p?.bytes ?? 0,
      proposalAtMs: Math.round(at - this.startedAt),
      proposalToCommitMs: Math.round(now - at),
      heightMs: Math.round(now - this.startedAt),
      buildMs: Math.round(this.buildMs),
      checkMs: Math.round(this.checkMs),
      mempool: this.mempool,
      proposals: [...this.seen.values()].map(s => `${s.round}:${s.txs}`),
      slowest: { step: Math.round(this.slowest.step), wait: Math.round(this.slowest.wait), write: Math.round(this.slowest.write) }
    }
    this.recent.push({ height, ...record })
    if (this.recent.length > MAX_HEIGHT_RECORDS) this.recent.shift()
    return record
  }
}
