// The client's shared state (who we are, the space shown, the people in it), with change events.
import type { Grid } from './scene.ts'
import { shortDid } from './scene.ts'

export interface SpaceView {
  id: string
  name: string
  owner: string
  grid: Grid
  private: boolean
  policy: { editors: string[], banned: string[], muted: string[], members: string[] }
  members: number
  objects: number
}
export interface Person { did: string, name: string }

/** What changed: the space shown (with the one before), or the people in it. */
export interface StoreEvents {
  space: { id: string | null, previous: string | null }
  people: undefined
}
type Listener<K extends keyof StoreEvents> = (detail: StoreEvents[K]) => void

export class Store {
  /** Our own did, once the peer has told us. */
  did: string | null = null
  /** The space shown, and its descriptor as the peer last gave it. */
  spaceId: string | null = null
  space: SpaceView | null = null
  private readonly members = new Map<string, Person>()
  private readonly listeners: { [K in keyof StoreEvents]: Array<Listener<K>> } = { space: [], people: [] }

  on<K extends keyof StoreEvents> (type: K, fn: Listener<K>): () => void {
    const list = this.listeners[type] as Array<Listener<K>>
    list.push(fn)
    return () => { list.splice(list.indexOf(fn), 1) }
  }

  private emit<K extends keyof StoreEvents> (type: K, detail: StoreEvents[K]): void {
    for (const fn of [...this.listeners[type] as Array<Listener<K>>]) fn(detail)
  }

  /** Shows a space (null: none). Switching to another one forgets its people first. */
  setSpace (id: string | null, space: SpaceView | null): void {
    const previous = this.spaceId
    this.spaceId = id
    this.space = space
    if (id !== previous) this.members.clear()
    this.emit('space', { id, previous })
  }

  /** The space's policy changed (editors, bans): kept on the descriptor. */
  setPolicy (policy: SpaceView['policy']): void {
    if (this.space != null) this.space.policy = policy
  }

  /** The people here, sorted: us first, then by name. */
  people (): Person[] {
    return [...this.members.values()].sort((a, b) => (a.did === this.did ? -1 : b.did === this.did ? 1 : (a.name || a.did).localeCompare(b.name || b.did)))
  }

  /** All the people here at once (from the peer's member list). */
  setPeople (list: Person[]): void {
    this.members.clear()
    for (const p of list) this.members.set(p.did, { did: p.did, name: p.name })
    this.emit('people', undefined)
  }

  /** Someone is here (again); a change only when they are new or renamed. */
  upsertPerson (p: Person): void {
    const had = this.members.get(p.did)
    if (had != null && had.name === p.name) return
    this.members.set(p.did, { did: p.did, name: p.name })
    this.emit('people', undefined)
  }

  removePerson (did: string): void {
    this.members.delete(did)
    this.emit('people', undefined)
  }

  /** A did as people read it: their name here, "you", or a short did. */
  nameOf (did: string): string {
    const p = this.members.get(did)
    return p != null && p.name !== '' ? p.name : did === this.did ? 'you' : shortDid(did)
  }
}
