/**
 * Feed storage over the node's `social` sublevel. Entries are kept as their signed bytes, by
 * author and sequence number, with indexes for ids, the timeline and tombstones; fork evidence
 * and the local mute and block lists live beside them. Appends are one atomic batch; our own
 * entries are written with sync so an acknowledged post survives a crash.
 *
 * Keys: `e/<did>/<seq>` entry bytes, `h/<did>` head, `i/<cid>` -> `<did>/<seq>`,
 * `t/<ts>/<did>/<seq>` posts and replies by time, `d/<cid>` deleted ids, `l/<cid>/<did>` likes, `p/<did>` merged profile, `g/<did>/<did>` who
 * follows whom (from follow and unfollow entries), `x/<did>` fork evidence, `m/<did>` muted,
 * `b/<did>` blocked; notices (replies and likes to our entries from feeds we may not hold, see
 * inbox.ts): `n/<ts>/<did>/<seq>` entry bytes, `k/<cid>` -> `<ts>/<did>/<seq>`, their likes in
 * `l/` like any other, and `q/<did>` the name a sender's profile entry gave with them. Numbers are zero-padded so keys sort.
 */
import { CID } from 'multiformats/cid'
import type { BytesSublevel } from '../store/store.ts'
import { decodeEntry, type DeleteBody, type Entry, type FeedHead, type FollowBody, type LikeBody, type ProfileBody } from './feed.ts'

const pad = (n: number, width: number): string => String(n).padStart(width, '0')
const SEQ_WIDTH = 13
const TS_WIDTH = 15
const enc = new TextEncoder()
const dec = new TextDecoder()

export interface ForkEvidence {
  author: string
  seq: number
  /** The entry we held and the one that contradicts it, as signed bytes (base64). */
  held: string
  other: string
  at: number
}

export interface TimelineItem {
  author: string
  seq: number
  ts: number
  /** Opaque cursor: pass as `before` for the next page. */
  cursor: string
  /** Kept from a notice (inbox.ts), not from a feed we hold. */
  notice?: boolean
}

export class FeedStore {
  private readonly db: BytesSublevel
  private readonly heads = new Map<string, FeedHead | null>()

  constructor (db: BytesSublevel) {
    this.db = db
  }

  async head (did: string): Promise<FeedHead | null> {
    const cached = this.heads.get(did)
    if (cached != null) return cached
    const raw = await this.db.get(`h/${did}`)
    // Only feeds we hold are cached: a peer can name any number of dids we do not hold.
    const head = raw == null ? null : parseHead(raw)
    if (head != null) this.heads.set(did, head)
    return head
  }

  /** An author's profile: the fields of their profile entries merged in order. */
  async profile (did: string): Promise<ProfileBody> {
    const raw = await this.db.get(`p/${did}`)
    if (raw == null) return {}
    const { name, bio, avatar } = JSON.parse(dec.decode(raw)) as { name?: string, bio?: string, avatar?: string }
    return { name, bio, avatar: avatar == null ? undefined : CID.parse(avatar) }
  }

  /** Appends a verified entry that checkAppend accepted. */
  async append (entry: Entry, options: { sync?: boolean } = {}): Promise<void> {
    const { seq, ts, kind } = entry.payload
    const id = entry.id.toString()
    const key = `${entry.author}/${pad(seq, SEQ_WIDTH)}`
    const head: FeedHead = { seq, id: entry.id, ts }
    const ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }> = [
      { type: 'put', key: `e/${key}`, value: entry.bytes },
      { type: 'put', key: `h/${entry.author}`, value: enc.encode(JSON.stringify({ seq, id, ts })) },
      { type: 'put', key: `i/${id}`, value: enc.encode(key) }
    ]
    if (kind === 'post' || kind === 'reply') ops.push({ type: 'put', key: `t/${pad(ts, TS_WIDTH)}/${key}`, value: new Uint8Array(0) })
    if (kind === 'profile') {
      const body = entry.payload.body as ProfileBody
      const merged = { ...await this.profile(entry.author), ...body }
      const json = { name: merged.name, bio: merged.bio, avatar: merged.avatar?.toString() }
      ops.push({ type: 'put', key: `p/${entry.author}`, value: enc.encode(JSON.stringify(json)) })
    }
    if (kind === 'like') ops.push({ type: 'put', key: `l/${(entry.payload.body as LikeBody).of.toString()}/${entry.author}`, value: new Uint8Array(0) })
    if (kind === 'follow') ops.push({ type: 'put', key: `g/${entry.author}/${(entry.payload.body as FollowBody).did}`, value: new Uint8Array(0) })
    if (kind === 'unfollow') ops.push({ type: 'del', key: `g/${entry.author}/${(entry.payload.body as FollowBody).did}` })
    if (kind === 'delete') {
      // A tombstone counts only for the deleter's own entries.
      const target = (entry.payload.body as DeleteBody).of.toString()
      const at = await this.db.get(`i/${target}`)
      if (at != null && dec.decode(at).startsWith(entry.author + '/')) ops.push({ type: 'put', key: `d/${target}`, value: new Uint8Array(0) })
    }
    await this.db.batch(ops, { sync: options.sync === true } as Record<string, unknown>)
    this.heads.set(entry.author, head)
  }

  async get (did: string, seq: number): Promise<Entry | undefined> {
    const bytes = await this.db.get(`e/${did}/${pad(seq, SEQ_WIDTH)}`)
    return bytes == null ? undefined : await decodeEntry(bytes)
  }

  /** Raw entry bytes of `did` from seq `from`, at most `limit`. */
  async range (did: string, from: number, limit: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = []
    for await (const value of this.db.values({ gte: `e/${did}/${pad(from, SEQ_WIDTH)}`, lt: `e/${did}0`, limit })) out.push(value)
    return out
  }

  /** Where an entry id lives. */
  async locate (id: CID): Promise<{ author: string, seq: number } | undefined> {
    const raw = await this.db.get(`i/${id.toString()}`)
    if (raw == null) return undefined
    const [author, seq] = dec.decode(raw).split('/')
    return { author, seq: Number(seq) }
  }

  async isDeleted (id: CID): Promise<boolean> {
    return (await this.db.get(`d/${id.toString()}`)) != null
  }

  /**
   * Posts and replies by time, newest first, before `before` (a cursor), for authors `include`
   * accepts; with `includeNotice`, the replies kept from notices by authors it accepts merged in.
   */
  async * timeline (options: { before?: string, include: (author: string) => boolean, includeNotice?: (author: string) => boolean }): AsyncGenerator<TimelineItem> {
    const feed = this.scanTimeline('t', options.before, options.include)
    const inbox = this.scanTimeline('n', options.before, options.includeNotice ?? (() => false))
    try {
      let a = await feed.next()
      let b = await inbox.next()
      while (a.done !== true || b.done !== true) {
        if (b.done === true || (a.done !== true && a.value.cursor >= b.value.cursor)) {
          yield a.value as TimelineItem
          a = await feed.next()
        } else {
          yield b.value
          b = await inbox.next()
        }
      }
    } finally {
      await feed.return(undefined)
      await inbox.return(undefined)
    }
  }

  private async * scanTimeline (prefix: 't' | 'n', before: string | undefined, include: (author: string) => boolean): AsyncGenerator<TimelineItem> {
    const lt = before != null ? `${prefix}/${before}` : `${prefix}0`
    for await (const key of this.db.keys({ gte: `${prefix}/`, lt, reverse: true })) {
      const [, ts, author, seq] = key.split('/')
      if (!include(author)) continue
      yield { author, seq: Number(seq), ts: Number(ts), cursor: key.slice(2), notice: prefix === 'n' ? true : undefined }
    }
  }

  // -- notices ------------------------------------------------------------------------------

  /** Keeps a checked notice (a reply or like to one of our entries); 'duplicate' if kept already. */
  async putNotice (entry: Entry): Promise<'stored' | 'duplicate'> {
    const id = entry.id.toString()
    if (await this.db.get(`k/${id}`) != null) return 'duplicate'
    const at = `${pad(entry.payload.ts, TS_WIDTH)}/${entry.author}/${pad(entry.payload.seq, SEQ_WIDTH)}`
    const ops: Array<{ type: 'put', key: string, value: Uint8Array }> = [
      { type: 'put', key: `n/${at}`, value: entry.bytes },
      { type: 'put', key: `k/${id}`, value: enc.encode(at) }
    ]
    if (entry.payload.kind === 'like') ops.push({ type: 'put', key: `l/${(entry.payload.body as LikeBody).of.toString()}/${entry.author}`, value: new Uint8Array(0) })
    await this.db.batch(ops)
    return 'stored'
  }

  /** Remembers the name a sender's profile entry (at `seq`) gave, unless a later one is kept. */
  async putNoticeName (did: string, seq: number, name: string): Promise<void> {
    const held = await this.noticeProfile(did)
    if (held != null && held.seq >= seq) return
    await this.db.put(`q/${did}`, enc.encode(JSON.stringify({ seq, name })))
  }

  /** The name a sender of notices gave, if any. */
  async noticeName (did: string): Promise<string | undefined> {
    return (await this.noticeProfile(did))?.name
  }

  private async noticeProfile (did: string): Promise<{ seq: number, name: string } | undefined> {
    const raw = await this.db.get(`q/${did}`)
    return raw == null ? undefined : JSON.parse(dec.decode(raw)) as { seq: number, name: string }
  }

  /** A kept notice by its timeline cursor. */
  async notice (cursor: string): Promise<Entry | undefined> {
    const bytes = await this.db.get(`n/${cursor}`)
    return bytes == null ? undefined : await decodeEntry(bytes)
  }

  /** How many notices are kept. */
  async noticeCount (): Promise<number> {
    let n = 0
    for await (const _ of this.db.keys({ gte: 'k/', lt: 'k0' })) n++
    return n
  }

  /**
   * Drops kept notices: the oldest `count` (by the entry's time), or all of one author's with
   * `author`. Returns how many went. A like stays counted while its author's feed holds it.
   */
  async dropNotices (options: { oldest?: number, author?: string }): Promise<number> {
    const ops: Array<{ type: 'del', key: string }> = []
    let removed = 0
    for await (const [key, bytes] of this.db.iterator({ gte: 'n/', lt: 'n0' })) {
      if (options.oldest != null && removed >= options.oldest) break
      if (options.author != null && key.split('/')[2] !== options.author) continue
      const e = await decodeEntry(bytes)
      ops.push({ type: 'del', key }, { type: 'del', key: `k/${e.id.toString()}` }, { type: 'del', key: `q/${e.author}` })
      removed++
      if (e.payload.kind === 'like' && await this.db.get(`i/${e.id.toString()}`) == null) {
        ops.push({ type: 'del', key: `l/${(e.payload.body as LikeBody).of.toString()}/${e.author}` })
      }
    }
    if (ops.length > 0) await this.db.batch(ops)
    return removed
  }

  /** Every author we hold a feed of, with its head. */
  async authors (): Promise<Map<string, FeedHead>> {
    const out = new Map<string, FeedHead>()
    for await (const [key, value] of this.db.iterator({ gte: 'h/', lt: 'h0' })) out.set(key.slice(2), parseHead(value))
    return out
  }

  /** Authors whose feeds we hold that like an entry. */
  async likes (id: CID): Promise<number> {
    let n = 0
    const p = `l/${id.toString()}/`
    for await (const _ of this.db.keys({ gte: p, lt: p.slice(0, -1) + '0' })) n++
    return n
  }

  /** Whom an author follows, as their feed (as far as we hold it) says. */
  async follows (did: string): Promise<Set<string>> {
    const out = new Set<string>()
    for await (const key of this.db.keys({ gte: `g/${did}/`, lt: `g/${did}0` })) out.add(key.slice(did.length + 3))
    return out
  }

  async recordFork (evidence: ForkEvidence): Promise<void> {
    await this.db.put(`x/${evidence.author}`, enc.encode(JSON.stringify(evidence)), { sync: true } as Record<string, unknown>)
  }

  async fork (did: string): Promise<ForkEvidence | undefined> {
    const raw = await this.db.get(`x/${did}`)
    return raw == null ? undefined : JSON.parse(dec.decode(raw)) as ForkEvidence
  }

  async forks (): Promise<ForkEvidence[]> {
    const out: ForkEvidence[] = []
    for await (const value of this.db.values({ gte: 'x/', lt: 'x0' })) out.push(JSON.parse(dec.decode(value)) as ForkEvidence)
    return out
  }

  async setListed (list: 'mute' | 'block', did: string, on: boolean): Promise<void> {
    const key = `${list === 'mute' ? 'm' : 'b'}/${did}`
    if (on) await this.db.put(key, new Uint8Array(0))
    else await this.db.del(key)
  }

  async listed (list: 'mute' | 'block'): Promise<Set<string>> {
    const p = list === 'mute' ? 'm' : 'b'
    const out = new Set<string>()
    for await (const key of this.db.keys({ gte: `${p}/`, lt: `${p}0` })) out.add(key.slice(2))
    return out
  }

  /** Drops every entry of an author (a blocked author, or a stranger's feed over the cap). */
  async dropFeed (did: string): Promise<void> {
    const head = await this.head(did)
    if (head == null) return
    for (let seq = 1; seq <= head.seq; seq += 500) {
      const batch = await this.range(did, seq, 500)
      const ops: Array<{ type: 'del', key: string }> = []
      for (const bytes of batch) {
        const e = await decodeEntry(bytes)
        const key = `${did}/${pad(e.payload.seq, SEQ_WIDTH)}`
        ops.push({ type: 'del', key: `e/${key}` }, { type: 'del', key: `i/${e.id.toString()}` })
        if (e.payload.kind === 'post' || e.payload.kind === 'reply') ops.push({ type: 'del', key: `t/${pad(e.payload.ts, TS_WIDTH)}/${key}` })
        if (e.payload.kind === 'like') ops.push({ type: 'del', key: `l/${(e.payload.body as LikeBody).of.toString()}/${did}` })
      }
      await this.db.batch(ops)
    }
    const follows: Array<{ type: 'del', key: string }> = []
    for await (const key of this.db.keys({ gte: `g/${did}/`, lt: `g/${did}0` })) follows.push({ type: 'del', key })
    await this.db.batch(follows)
    await this.db.del(`p/${did}`)
    await this.db.del(`h/${did}`)
    this.heads.delete(did)
  }
}

function parseHead (raw: Uint8Array): FeedHead {
  const { seq, id, ts } = JSON.parse(dec.decode(raw)) as { seq: number, id: string, ts: number }
  return { seq, id: CID.parse(id), ts }
}
