/**
 * Screen and camera sharing onto boards, on the voice streams: a sharer tells its near members
 * where its board stands (SHARE notes, repeated every SHARE_NOTE_MS while it shares, as TALKING
 * notes are), a watcher picks the nearest board within range (at most MAX_VIEWED_BOARDS) and asks
 * its sharer for video (WANT_VIDEO), and the sharer sends its VP8 frames, cut into VIDEO chunks,
 * only to the listeners that asked, at most MAX_VOICE_LISTENERS of them. Bounded as audio is:
 * a watcher receives one board's video whatever the crowd. Chunks are sealed in a private space
 * and every chunk not passed on is counted by reason, as audio frames are.
 */
import { ExcludedError, InvalidVoiceFrameError, NotSharingError, OwnerMutedError, VoiceRateLimitError } from './errors.ts'
import type { DropReason, VoiceComponents, VoiceMember } from './index.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import type { VoiceSeal } from './seal.ts'
import type { Link, VoiceSpace, VoiceStreams } from './streams.ts'
import { checkVideo, encodeKeyframe, encodeShare, encodeVideo, encodeWantVideo, MAX_VIDEO_CHUNK_BYTES, videoAad, type Vec3, type VideoChunk, type VoiceFrame } from './wire.ts'

/** Boards a watcher receives video from at once (the nearest sharing, within range). */
export const MAX_VIEWED_BOARDS = 1
/** A sharer repeats its SHARE note this often, so members that come near learn of its board. */
export const SHARE_NOTE_MS = 1_000
/** A board with no SHARE note for this long is gone. */
export const SHARE_HOLD_MS = 3 * SHARE_NOTE_MS
export { KEYFRAME_REQUEST_MIN_MS, VIDEO_MAX_BITRATE, VIDEO_MAX_FPS, VIDEO_MAX_HEIGHT, VIDEO_MAX_WIDTH } from './video-limits.ts'
import { KEYFRAME_REQUEST_MIN_MS } from './video-limits.ts'
/** VIDEO chunks one peer may send us a second in one space, over all its streams (600 kbps is about 75), with a burst as large; past it they are dropped as 'rate'. */
export const VIDEO_CHUNKS_PER_SECOND = 200
/** Our own chunks a second, under the peers' limit. */
export const OWN_VIDEO_CHUNKS_PER_SECOND = VIDEO_CHUNKS_PER_SECOND * 3 / 4

export interface Board { position: Vec3, at: number }

export interface ShareSpace {
  watchers: number
  own?: { position: Vec3, noteAt: number }
  /** When a keyframe request was last passed to our client (as sharer), and last sent to a board's sharer (as viewer). */
  keyframeOutAt: number
  keyframeAskedAt: Map<string, number>
  boards: Map<string, Board>
  viewed: string[]
}

export interface BoardEvent { space: string, did: string, on: boolean, position: Vec3 }
export interface VideoEvent { space: string, did: string, chunk: VideoChunk }

/** What sharing asks of the voice service. */
export interface ShareHost {
  streams: VoiceStreams
  rangeM: number
  maxListeners: number
  refusal: (space: string, did: string) => DropReason | undefined
  listenerRefused: (space: string, did: string) => boolean
  drop: (reason: DropReason) => void
  /** The sealing of a private space's chunks (the speaker's key and counter are shared with audio). */
  seal: VoiceSeal
  board: (e: BoardEvent) => void
  video: (e: VideoEvent) => void
  keyframe: (e: { space: string }) => void
}

const dist = (a: Vec3, b: readonly number[]): number => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2])

export class Shares {
  private readonly c: VoiceComponents
  private readonly h: ShareHost
  private readonly spaces = new Map<string, ShareSpace>()
  private readonly wants = new WeakMap<Link, { theyWant: boolean, weWant: boolean, keyframeAt: number }>()
  private readonly ownBucket = new TokenBuckets(OWN_VIDEO_CHUNKS_PER_SECOND, OWN_VIDEO_CHUNKS_PER_SECOND)

  constructor (components: VoiceComponents, host: ShareHost) {
    this.c = components
    this.h = host
  }

  of (space: string): ShareSpace {
    let s = this.spaces.get(space)
    if (s == null) { s = { watchers: 0, boards: new Map(), viewed: [], keyframeOutAt: 0, keyframeAskedAt: new Map() }; this.spaces.set(space, s) }
    return s
  }

  forget (space: string): void { this.spaces.delete(space) }

  watching (space: string): boolean { return (this.spaces.get(space)?.watchers ?? 0) > 0 }

  /** Watching or sharing: we hold streams to the near members. */
  active (space: string): boolean { const s = this.spaces.get(space); return s != null && (s.watchers > 0 || s.own != null) }

  private want (link: Link): { theyWant: boolean, weWant: boolean, keyframeAt: number } {
    let w = this.wants.get(link)
    if (w == null) { w = { theyWant: false, weWant: false, keyframeAt: 0 }; this.wants.set(link, w) }
    return w
  }

  /** Starts (on) or stops sharing our board at `position`; the note goes to every near member with a stream. */
  share (vs: VoiceSpace, on: boolean, position: Vec3): void {
    const me = this.c.identity.did
    if (on && this.c.spaces.isExcluded(vs.id, me)) throw new ExcludedError(`the owner keeps you out of ${vs.id}`)
    if (on && this.c.spaces.isOwnerMuted(vs.id, me)) throw new OwnerMutedError(`the owner muted you in ${vs.id}`)
    if (!Array.isArray(position) || position.length !== 3 || !position.every(n => typeof n === 'number' && Number.isFinite(n))) throw new InvalidVoiceFrameError('a board position is [x, y, z], finite')
    const s = this.of(vs.id)
    if (!on && s.own == null) return
    s.own = on ? { position: [...position] as Vec3, noteAt: Date.now() } : undefined
    this.note(vs, encodeShare(on, position))
  }

  /** One chunk of our shared stream, to every listener that wants it; NotSharingError unless we share. */
  sendVideo (vs: VoiceSpace, chunk: VideoChunk): void {
    const s = this.of(vs.id)
    if (s.own == null) throw new NotSharingError(`not sharing in ${vs.id}`)
    if (this.c.spaces.isExcluded(vs.id, this.c.identity.did)) throw new ExcludedError(`the owner keeps you out of ${vs.id}`)
    if (this.c.spaces.isOwnerMuted(vs.id, this.c.identity.did)) throw new OwnerMutedError(`the owner muted you in ${vs.id}`)
    checkVideo(chunk)
    if (!this.ownBucket.take(vs.id)) throw new VoiceRateLimitError(`more than ${OWN_VIDEO_CHUNKS_PER_SECOND} video chunks a second`)
    const cipher = this.c.spaces.cipher(vs.id)
    const data = cipher == null ? chunk.data : this.h.seal.seal(vs.id, this.c.identity.did, cipher, chunk.data, videoAad(vs.id, this.c.identity.did, chunk.seq, chunk.index))
    const bytes = encodeVideo({ ...chunk, data })
    let sent = 0
    for (const link of vs.links.values()) {
      if (sent >= this.h.maxListeners) break
      if (!this.want(link).theyWant || link.out == null || link.did == null || this.h.listenerRefused(vs.id, link.did)) continue
      sent++
      this.h.streams.writeVideo(link.out, bytes)
    }
  }

  /** Asks the sharer of the board of `did` we view for a keyframe, at most every KEYFRAME_REQUEST_MIN_MS; false when not sent. */
  requestKeyframe (vs: VoiceSpace, did: string, now = Date.now()): boolean {
    const s = this.of(vs.id)
    const link = [...vs.links.values()].find(l => l.did === did)
    if (link?.out == null || !this.want(link).weWant) return false
    if (now - (s.keyframeAskedAt.get(did) ?? 0) < KEYFRAME_REQUEST_MIN_MS) return false
    s.keyframeAskedAt.set(did, now)
    this.h.streams.write(link.out, encodeKeyframe(), true)
    return true
  }

  /** A SHARE, WANT_VIDEO, VIDEO or KEYFRAME frame from `link`'s member; never throws. */
  take (vs: VoiceSpace, link: Link, f: VoiceFrame & { type: 'share' | 'want-video' | 'video' | 'keyframe' }): void {
    const did = link.did as string
    if (f.type === 'want-video') {
      const w = this.want(link)
      const was = w.theyWant
      if (!f.on) w.theyWant = false
      else if (!this.h.listenerRefused(vs.id, did) && [...vs.links.values()].filter(l => this.want(l).theyWant).length < this.h.maxListeners) w.theyWant = true
      // A new viewer starts from a keyframe, not from the next one in the stream.
      if (w.theyWant && !was) this.keyframeOut(vs, Date.now())
      return
    }
    if (f.type === 'keyframe') {
      const w = this.want(link)
      const now = Date.now()
      if (!w.theyWant || this.of(vs.id).own == null) { this.h.drop('unwanted'); return }
      if (now - w.keyframeAt < KEYFRAME_REQUEST_MIN_MS) { this.h.drop('rate'); return }
      w.keyframeAt = now
      this.keyframeOut(vs, now)
      return
    }
    const refused = this.h.refusal(vs.id, did)
    if (refused != null) { this.h.drop(refused); return }
    const s = this.of(vs.id)
    if (f.type === 'share') {
      const was = s.boards.get(did)
      if (f.on) s.boards.set(did, { position: f.position, at: Date.now() })
      else s.boards.delete(did)
      if (f.on !== (was != null) || (was != null && dist(was.position, f.position) > 0)) this.h.board({ space: vs.id, did, on: f.on, position: f.position })
      return
    }
    if (!this.want(link).weWant) { this.h.drop('unwanted'); return }
    let data = f.payload
    const cipher = this.c.spaces.cipher(vs.id)
    if (cipher != null) {
      try {
        data = this.h.seal.open(vs.id, did, cipher, f.payload, videoAad(vs.id, did, f.seq, f.index))
      } catch {
        this.h.drop('decrypt')
        return
      }
      if (data.length > MAX_VIDEO_CHUNK_BYTES) { this.h.drop('oversize'); return }
    }
    this.h.video({ space: vs.id, did, chunk: { seq: f.seq, ts: f.ts, key: f.key, index: f.index, count: f.count, data } })
  }

  /** The boards we view (the nearest within range, of near members not refused) and WANT_VIDEO to match. */
  recompute (vs: VoiceSpace, members: VoiceMember[], position: readonly number[]): void {
    const s = this.of(vs.id)
    const present = new Set(members.map(m => m.did))
    for (const [did, b] of [...s.boards]) {
      if (!present.has(did)) { s.boards.delete(did); this.h.board({ space: vs.id, did, on: false, position: b.position }) }
    }
    if (s.watchers > 0) {
      const near = new Set(members.filter(m => m.near).map(m => m.did))
      s.viewed = [...s.boards]
        .filter(([did, b]) => near.has(did) && dist(b.position, position) <= this.h.rangeM && this.h.refusal(vs.id, did) == null)
        .sort(([da, a], [db, b]) => dist(a.position, position) - dist(b.position, position) || (da < db ? -1 : da > db ? 1 : 0))
        .slice(0, MAX_VIEWED_BOARDS)
        .map(([did]) => did)
    } else {
      s.viewed = []
    }
    const viewed = new Set(s.viewed)
    for (const link of vs.links.values()) {
      const w = this.want(link)
      const want = link.did != null && viewed.has(link.did)
      if (want !== w.weWant && link.out != null) {
        w.weWant = want
        this.h.streams.write(link.out, encodeWantVideo(want), true)
      }
    }
  }

  /** The periodic work: our SHARE note again, boards whose notes ran out. */
  tick (vs: VoiceSpace, now: number): void {
    const s = this.spaces.get(vs.id)
    if (s == null) return
    if (s.own != null && now - s.own.noteAt >= SHARE_NOTE_MS) {
      s.own.noteAt = now
      this.note(vs, encodeShare(true, s.own.position))
    }
    for (const [did, b] of [...s.boards]) {
      if (now - b.at > SHARE_HOLD_MS) { s.boards.delete(did); this.h.board({ space: vs.id, did, on: false, position: b.position }) }
    }
  }

  /** Tells our client a viewer needs a keyframe, at most every KEYFRAME_REQUEST_MIN_MS in a space. */
  private keyframeOut (vs: VoiceSpace, now: number): void {
    const s = this.of(vs.id)
    if (s.own == null || now - s.keyframeOutAt < KEYFRAME_REQUEST_MIN_MS) return
    s.keyframeOutAt = now
    this.h.keyframe({ space: vs.id })
  }

  private note (vs: VoiceSpace, bytes: Uint8Array): void {
    for (const link of vs.links.values()) if (link.out != null) this.h.streams.write(link.out, bytes, true)
  }

  /** What sharing does in a space. */
  state (space: string): { sharing: boolean, watching: boolean, boards: Array<{ did: string, position: Vec3, viewing: boolean }> } {
    const s = this.spaces.get(space)
    if (s == null) return { sharing: false, watching: false, boards: [] }
    return { sharing: s.own != null, watching: s.watchers > 0, boards: [...s.boards].map(([did, b]) => ({ did, position: b.position, viewing: s.viewed.includes(did) })) }
  }
}
