/**
 * A ledger that cannot write halts rather than go on from what it could not persist: a vote or
 * proposal is signed only once the write-ahead record that commits us to it is on disk, a block is
 * applied only once it is, and a transaction is answered "pending" only once it is. When a write
 * fails (a full disk, say), the service drops what it held in memory beyond its last write and
 * tries a small synced write every PERSIST_RETRY_MS; once one succeeds it takes the height up
 * again from the write-ahead record on disk, exactly as a restart would. No restart is needed, and
 * nothing it signed can be contradicted by what it signs after.
 */

/** How often a halted ledger tries to write again. */
export const PERSIST_RETRY_MS = 1_000

/** The ledger cannot write to its store (a full disk, say): nothing is accepted or committed until it can. */
export class LedgerHaltedError extends Error {
  name = 'LedgerHaltedError'
}

/** Why the ledger halted: the store's error, its code (ENOSPC for a full disk, when the store says), and since when (ms since the epoch). */
export interface HaltInfo { error: string, code?: string, message: string, since: number }

/** The error code a store error carries, here or on its causes (LevelDB's IO errors name the file, not the code). */
function codeOf (err: unknown): string | undefined {
  for (let e = err as { code?: unknown, cause?: unknown, message?: unknown } | undefined, depth = 0; e != null && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return e.code
    if (typeof e.message === 'string' && /No space left on device/i.test(e.message)) return 'ENOSPC'
  }
  return undefined
}

/** The halt state and its retry timer. */
export class Halt {
  info: HaltInfo | null = null
  private timer?: ReturnType<typeof setTimeout>
  private readonly retryMs: number
  private readonly retry: () => void

  constructor (retryMs: number, retry: () => void) {
    this.retryMs = retryMs
    this.retry = retry
  }

  get halted (): boolean { return this.info != null }

  /** Records a failed write; true when this starts a halt (false: halted already, the reason updated). */
  enter (err: unknown): boolean {
    const e = err as Error
    const code = codeOf(err)
    const fresh = this.info == null
    this.info = { error: e?.name ?? 'Error', ...(code != null ? { code } : {}), message: e?.message ?? String(err), since: this.info?.since ?? Date.now() }
    this.schedule()
    return fresh
  }

  /** The error a refused submission gets while halted. */
  error (): LedgerHaltedError {
    const i = this.info
    return new LedgerHaltedError(`the ledger cannot write to its store${i?.code != null ? ` (${i.code})` : ''}: ${i?.message ?? 'unknown error'}; it takes transactions again once it can`)
  }

  clear (): void {
    this.info = null
    this.stop()
  }

  /** Arms the next attempt (once). */
  schedule (): void {
    if (this.timer != null) return
    this.timer = setTimeout(() => { this.timer = undefined; this.retry() }, this.retryMs)
  }

  stop (): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
