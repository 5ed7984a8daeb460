/**
 * What a peer keeps of the spaces it has joined, in its LevelDB sublevel:
 *   s/<id>            descriptor bytes
 *   p/<id>            latest policy bytes
 *   k/<id>/<epoch>    key envelopes sealed to us (private spaces), by epoch
 *   j/<id>            our membership: display name and avatar (present while joined)
 *   a/<id>            our admission proof for the space (admission.ts): {did, nonce}
 *   c/<id>/<ts>/<cid> chat records of the authors the policy names, r/… of promoted authors, n/… of
 *                     proven newcomers, u/… of unproven ones (history.ts decides what is kept; the
 *                     store deletes what it evicts)
 *   v/<id>/<did>      the admission proof of an author we keep chat of (sent on in sync answers)
 *   w/<id>/<n>        accepted world-update records in acceptance order (replayed at start)
 * Chat and world records of a private space are stored sealed under its group key (the caller
 * seals them); the rest in the clear. Writes that acknowledge a user's action (create, say, world
 * edits) are synced to disk.
 */
import { KeyedLock } from '../store/keyed-lock.ts'
import type { BytesSublevel } from '../store/store.ts'
import { CHAT_AREAS, type ChatArea } from './history.ts'

export { MAX_CHAT_HISTORY } from './history.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

export interface Membership { name: string, avatar: string, joined: number }

function pad (n: number, width = 16): string {
  return n.toString().padStart(width, '0')
}

/** Where a chat record is stored: its part of the history, time and id. */
export interface ChatKey { area: ChatArea, ts: number, id: string }

const CHAT_PREFIX: Record<ChatArea, string> = { named: 'c', known: 'r', new: 'n', unproven: 'u' }

function chatKey (space: string, c: ChatKey): string {
  return `${CHAT_PREFIX[c.area]}/${space}/${pad(c.ts)}/${c.id}`
}

/** What one chat write also does: keep an author's proof, forget those of authors no longer kept. */
export interface ChatProofs { keep?: { did: string, proof: Uint8Array }, forget?: string[] }

export class SpaceStore {
  private readonly db: BytesSublevel
  private readonly worldCount = new Map<string, number>()
  private readonly appends = new KeyedLock()

  constructor (db: BytesSublevel) {
    this.db = db
  }

  async get (kind: 's' | 'p' | 'k' | 'a', id: string): Promise<Uint8Array | undefined> {
    return await this.db.get(`${kind}/${id}`)
  }

  async put (kind: 's' | 'p' | 'k' | 'a', id: string, bytes: Uint8Array, sync = false): Promise<void> {
    await this.db.put(`${kind}/${id}`, bytes, { sync } as Record<string, unknown>)
  }

  async setMembership (id: string, m: Membership | null): Promise<void> {
    if (m == null) await this.db.del(`j/${id}`, { sync: true } as Record<string, unknown>)
    else await this.db.put(`j/${id}`, enc.encode(JSON.stringify(m)), { sync: true } as Record<string, unknown>)
  }

  async memberships (): Promise<Map<string, Membership>> {
    const out = new Map<string, Membership>()
    for await (const [k, v] of this.db.iterator({ gte: 'j/', lt: 'j0' })) {
      try { out.set(k.slice(2), JSON.parse(dec.decode(v)) as Membership) } catch {}
    }
    return out
  }

  /** Descriptor ids we hold. */
  async spaces (): Promise<string[]> {
    const out: string[] = []
    for await (const k of this.db.keys({ gte: 's/', lt: 's0' })) out.push(k.slice(2))
    return out
  }

  /** Stores a chat record in its part and deletes the ones the history evicted for it, in one batch. */
  async addChat (id: string, chat: ChatKey & { bytes: Uint8Array }, evicted: ChatKey[] = [], sync = false, proofs: ChatProofs = {}): Promise<void> {
    await this.db.batch([
      { type: 'put' as const, key: chatKey(id, chat), value: chat.bytes },
      ...evicted.map(e => ({ type: 'del' as const, key: chatKey(id, e) })),
      ...(proofs.forget ?? []).map(did => ({ type: 'del' as const, key: `v/${id}/${did}` })),
      ...(proofs.keep != null ? [{ type: 'put' as const, key: `v/${id}/${proofs.keep.did}`, value: proofs.keep.proof }] : [])
    ], { sync } as Record<string, unknown>)
  }

  /** Moves a stored chat record to another part (the policy now names its author, or no longer does). */
  async moveChat (id: string, from: ChatKey, area: ChatArea, bytes: Uint8Array): Promise<void> {
    if (from.area === area) return
    await this.db.batch([
      { type: 'del' as const, key: chatKey(id, from) },
      { type: 'put' as const, key: chatKey(id, { ...from, area }), value: bytes }
    ])
  }

  /** The stored chat records of a space, part by part, each in (ts, id) order. */
  async chat (id: string): Promise<Array<{ area: ChatArea, ts: number, cid: string, bytes: Uint8Array }>> {
    const out: Array<{ area: ChatArea, ts: number, cid: string, bytes: Uint8Array }> = []
    for (const area of CHAT_AREAS) {
      const p = CHAT_PREFIX[area]
      for await (const [k, v] of this.db.iterator({ gte: `${p}/${id}/`, lt: `${p}/${id}0` })) {
        const [ts, cid] = k.slice(p.length + id.length + 2).split('/')
        out.push({ area, ts: Number(ts), cid, bytes: v })
      }
    }
    return out
  }

  /** Deletes the stored proofs of authors we keep no chat of. */
  async forgetProofs (id: string, dids: string[]): Promise<void> {
    await this.db.batch(dids.map(did => ({ type: 'del' as const, key: `v/${id}/${did}` })))
  }

  /** The admission proofs stored for a space's authors: did -> nonce. */
  async proofs (id: string): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>()
    for await (const [k, v] of this.db.iterator({ gte: `v/${id}/`, lt: `v/${id}0` })) out.set(k.slice(id.length + 3), v)
    return out
  }

  /** Appends an accepted world record; appends to one space run one at a time, so none overwrites another. */
  async addWorld (id: string, bytes: Uint8Array, sync = false): Promise<void> {
    await this.appends.run(id, async () => {
      let n = this.worldCount.get(id)
      if (n == null) {
        n = 0
        for await (const k of this.db.keys({ gte: `w/${id}/`, lt: `w/${id}0`, reverse: true, limit: 1 })) n = Number(k.slice(k.lastIndexOf('/') + 1)) + 1
      }
      await this.db.put(`w/${id}/${pad(n)}`, bytes, { sync } as Record<string, unknown>)
      this.worldCount.set(id, n + 1)
    })
  }

  /** Key envelopes held for a space: [epoch, bytes], oldest first. */
  async envelopes (id: string): Promise<Array<[number, Uint8Array]>> {
    const out: Array<[number, Uint8Array]> = []
    for await (const [k, v] of this.db.iterator({ gte: `k/${id}/`, lt: `k/${id}0` })) out.push([Number(k.slice(k.lastIndexOf('/') + 1)), v])
    return out.sort((a, b) => a[0] - b[0])
  }

  async *world (id: string): AsyncGenerator<Uint8Array> {
    for await (const v of this.db.values({ gte: `w/${id}/`, lt: `w/${id}0` })) yield v
  }
}
