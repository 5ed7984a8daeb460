// Routes the peer's WebSocket events to the panels by type, through one table.
import type { EventMessage } from './api.ts'

export type EventHandler = (msg: EventMessage) => void
/** The event types a panel handles, each with its handler. */
export type EventHandlers = Record<string, EventHandler>

export class EventTable {
  private readonly table = new Map<string, EventHandler[]>()

  /** Adds a panel's handlers; several panels may handle one type (called in the order added). */
  register (handlers: EventHandlers): void {
    for (const [type, fn] of Object.entries(handlers)) {
      const list = this.table.get(type)
      if (list == null) this.table.set(type, [fn])
      else list.push(fn)
    }
  }

  dispatch (msg: EventMessage): void {
    for (const fn of this.table.get(msg.type) ?? []) fn(msg)
  }
}

/** The space an event is about, when it names one. */
export function spaceOf (msg: EventMessage): string | undefined {
  return typeof msg.space === 'string' ? msg.space : undefined
}

/** Runs fn once, ms after the first of a burst of calls with the same key. */
export function debouncer (): (key: string, ms: number, fn: () => Promise<void> | void) => void {
  const timers = new Map<string, ReturnType<typeof setTimeout>>()
  return (key, ms, fn) => {
    if (timers.has(key)) return
    timers.set(key, setTimeout(() => { timers.delete(key); void fn() }, ms))
  }
}
