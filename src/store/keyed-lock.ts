/**
 * Runs async work one at a time per key (appends to one feed, writes to one space's log, changes to
 * one policy), in the order it was asked for; different keys run side by side. A key's entry is
 * dropped when its last piece of work ends, so the map holds only keys with work pending.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>()

  async run<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const tail = next.catch(() => {})
    this.tails.set(key, tail)
    try {
      return await next
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }
}
