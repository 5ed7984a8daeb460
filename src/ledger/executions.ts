/**
 * Blocks executed on top of the current state at the height being decided, so each block is
 * executed once per node: the proposer keeps what it computed while building, the others what
 * they computed checking the proposal, and the commit reuses that result. Bounded, and cleared
 * whenever the state moves on.
 */
import { checkBlock, type Block, type LedgerState, type Receipt } from './state.ts'
import type { TxDecoder } from './tx.ts'

/** Executed blocks (post-state and receipts) kept for the current height, for the commit to reuse. */
export const MAX_EXECUTED_BLOCKS = 8

export interface Execution { state: LedgerState, receipts: Receipt[] }

export class Executions {
  private readonly decode: TxDecoder
  private readonly kept = new Map<string, Execution & { parent: LedgerState }>()

  constructor (decode: TxDecoder) {
    this.decode = decode
  }

  /** Blocks kept (at most MAX_EXECUTED_BLOCKS). */
  get size (): number { return this.kept.size }

  clear (): void { this.kept.clear() }

  /** Keeps the result of executing the block `hash` on top of `parent`, for the commit. */
  remember (hash: string, parent: LedgerState, result: Execution): void {
    if (this.kept.size >= MAX_EXECUTED_BLOCKS) this.kept.delete(this.kept.keys().next().value as string)
    this.kept.set(hash, { parent, state: result.state, receipts: result.receipts })
  }

  /** The result of executing `block` on `parent`: remembered, or computed (checkBlock, which throws on an invalid block) now. */
  of (hash: string, block: Block, parent: LedgerState): Execution {
    const known = this.kept.get(hash)
    if (known != null && known.parent === parent) return known
    const result = checkBlock(parent, block, { decode: this.decode })
    this.remember(hash, parent, result)
    return result
  }
}
