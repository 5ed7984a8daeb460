/**
 * The voice service: moves Opus frames between the members of a space over
 * `/peerverse/voice/2.0.0` (its streams are streams.ts's). A listener holds streams to its near
 * members, hears their TALKING notes, picks whom to hear with the pure chooseHeard (hearing.ts)
 * and sends WANT 1/0 to match; a speaker sends AUDIO only to listeners that want it. Every frame
 * it does not pass on is dropped and counted by reason; a stream that breaks a limit is closed
 * and reported to onRejected. Who we are, the spaces and social are reached through the narrow
 * views of index.ts, so this file holds no libp2p and no space internals.
 */
import { logger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import { TokenBuckets } from '../net/rate-limit.ts'
import { ExcludedError, NotJoinedError, OwnerMutedError, VoiceRateLimitError } from './errors.ts'
import { chooseHeard, inEarshot, isTalking, TALKING_HOLD_MS } from './hearing.ts'
import type { DropReason, VoiceComponents, VoiceEvents, VoiceMember, VoiceState } from './index.ts'
import { MAX_VOICE_STREAMS_PER_PEER, reasonOf, VOICE_FRAMES_PER_SECOND, VoiceStreams, type Link, type Speaker, type VoiceSpace } from './streams.ts'
import { Shares } from './share.ts'
import { VoiceSeal } from './seal.ts'
import { audioAad, checkAudio, decodeVoiceFrame, encodeAudio, encodeTalking, encodeWant, MAX_VIDEO_CHUNK_BYTES, MAX_VOICE_PAYLOAD_BYTES, VOICE_CIPHER_OVERHEAD_BYTES, VOICE_PROTOCOL, type AudioFrame, type Vec3, type VideoChunk } from './wire.ts'

export { MAX_QUEUED_AUDIO_FRAMES, MAX_QUEUED_CONTROL_FRAMES, MAX_VOICE_STREAMS_PER_PEER, VOICE_FRAMES_PER_SECOND, VOICE_MEMBER_WAIT_MS, VOICE_REDIAL_MS } from './streams.ts'

const log = logger('peerverse:voice')

/** Listeners a speaker sends its audio to at most (MAX_NEAR_MEMBERS). */
export const MAX_VOICE_LISTENERS = 32
/** A speaker's TALKING note goes out at most this often while its frames flow; the service's tick too. */
export const TALKING_NOTE_MS = 250
/** How often a listener says its WANT again while it holds it: a WANT lost with a stream that closed is healed by the next. */
export const WANT_REFRESH_MS = 1_000
/** TALKING notes from one member closer together than this are dropped as 'rate' (an honest speaker sends one every TALKING_NOTE_MS). */
export const TALKING_NOTE_MIN_GAP_MS = TALKING_NOTE_MS / 2
/** Silence after our last frame at which we tell the near that we stopped (TALKING 0). */
export const TALKING_STOP_MS = 2 * TALKING_NOTE_MS
/** A speaker heard of (by note or frame) and silent this long is forgotten: a listener keeps no state for everyone who ever talked. */
export const SPEAKER_FORGET_MS = 10 * TALKING_HOLD_MS
/** Our own frames a second (under the peers' limit, notes included), and burst. */
export const OWN_FRAMES_PER_SECOND = VOICE_FRAMES_PER_SECOND * 3 / 4
export const OWN_FRAMES_BURST = VOICE_FRAMES_PER_SECOND / 2

const emptyDropped = (): Record<DropReason, number> => ({
  oversize: 0, malformed: 0, rate: 0, 'not-member': 0, excluded: 0, 'owner-muted': 0, blocked: 0, 'voice-muted': 0, unwanted: 0, decrypt: 0, 'not-joined': 0
})

export class VoiceService extends TypedEventEmitter<VoiceEvents> {
  readonly settings: { maxHeard: number, rangeM: number }
  private readonly c: VoiceComponents
  private readonly spaces = new Map<string, VoiceSpace>()
  private readonly streams: VoiceStreams
  private readonly shares: Shares
  /** Our sending keys and the speakers' keys of private spaces. */
  private readonly seal = new VoiceSeal()
  private readonly voiceMuted = new Set<string>()
  private readonly ownBucket = new TokenBuckets(OWN_FRAMES_PER_SECOND, OWN_FRAMES_BURST)
  private dropped = emptyDropped()
  private timer?: ReturnType<typeof setInterval>
  private started = false

  constructor (settings: { maxHeard: number, rangeM: number }, components: VoiceComponents) {
    super()
    if (!Number.isInteger(settings.maxHeard) || settings.maxHeard < 0) throw new RangeError('maxHeard must be a non-negative integer')
    if (!(settings.rangeM > 0)) throw new RangeError('rangeM must be positive')
    this.settings = settings
    this.c = components
    this.streams = new VoiceStreams(components, {
      spaceOf: space => this.spaceOf(space),
      take: (vs, link, bytes) => { this.take(vs, link, bytes) },
      recompute: vs => { this.recompute(vs) },
      drop: reason => { this.drop(reason) }
    })
    this.shares = new Shares(components, {
      streams: this.streams,
      rangeM: settings.rangeM,
      maxListeners: MAX_VOICE_LISTENERS,
      refusal: (space, did) => this.refusal(space, did),
      listenerRefused: (space, did) => this.listenerRefused(space, did),
      drop: reason => { this.drop(reason) },
      seal: this.seal,
      board: detail => { this.safeDispatchEvent('voice:board', { detail }) },
      keyframe: detail => { this.safeDispatchEvent('voice:keyframe', { detail }) },
      video: detail => { this.safeDispatchEvent('voice:video', { detail }) }
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    if (this.c.store != null) for await (const key of this.c.store.keys({ gte: 'm/', lt: 'm0' })) this.voiceMuted.add(key.slice(2))
    await this.c.protocols.handle(VOICE_PROTOCOL, this.streams.receive, {
      maxInboundStreams: MAX_VOICE_STREAMS_PER_PEER * 2,
      maxOutboundStreams: MAX_VOICE_STREAMS_PER_PEER * 2,
      runOnLimitedConnection: true
    })
    this.timer = setInterval(() => { this.tick() }, TALKING_NOTE_MS)
    this.timer.unref?.()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.timer)
    for (const vs of this.spaces.values()) for (const link of [...vs.links.values()]) this.streams.closeLink(vs, link)
    this.spaces.clear()
    await this.c.protocols.unhandle(VOICE_PROTOCOL)
  }

  // -- what the user does --------------------------------------------------------------------------

  /** Starts listening in a space (ref-counted): streams to the near members, WANT to the heard set. */
  listen (space: string): void {
    this.need(space).listeners++
    this.recompute(this.need(space))
  }

  unlisten (space: string): void {
    const vs = this.spaces.get(space)
    if (vs == null || vs.listeners === 0) return
    vs.listeners--
    if (this.c.spaces.isJoined(space)) this.recompute(vs)
  }

  /** Sends our own frame to every listener that wants it; NotJoinedError, ExcludedError, OwnerMutedError, or a named error for bad input. */
  send (space: string, frame: AudioFrame): void {
    const vs = this.need(space)
    const me = this.c.identity.did
    if (this.c.spaces.isExcluded(space, me)) throw new ExcludedError(`the owner keeps you out of ${space}`)
    if (this.c.spaces.isOwnerMuted(space, me)) throw new OwnerMutedError(`the owner muted you in ${space}`)
    checkAudio(frame)
    if (!this.ownBucket.take(space)) throw new VoiceRateLimitError(`more than ${OWN_FRAMES_PER_SECOND} frames a second`)
    const now = Date.now()
    vs.lastSentAt = now
    if (!vs.talkingSent || now - vs.noteAt >= TALKING_NOTE_MS) {
      vs.noteAt = now
      vs.talkingSent = true
      const note = encodeTalking(Math.max(1, frame.level))
      for (const link of vs.links.values()) if (link.out != null) this.streams.write(link.out, note, true)
    }
    const cipher = this.c.spaces.cipher(space)
    const data = cipher == null ? frame.data : this.seal.seal(space, me, cipher, frame.data, audioAad(space, me, frame.seq))
    const bytes = encodeAudio({ ...frame, data })
    let sent = 0
    for (const link of vs.links.values()) {
      if (sent >= MAX_VOICE_LISTENERS) break
      if (!link.theyWant || link.out == null || link.did == null || this.listenerRefused(space, link.did)) continue
      sent++
      this.streams.write(link.out, bytes, false)
    }
  }

  /** Starts watching boards in a space (ref-counted): streams to the near members, WANT_VIDEO to the nearest board in range. */
  watch (space: string): void {
    const vs = this.need(space)
    this.shares.of(space).watchers++
    this.recompute(vs)
  }

  unwatch (space: string): void {
    const s = this.shares.of(space)
    if (s.watchers === 0) return
    s.watchers--
    const vs = this.spaces.get(space)
    if (vs != null && this.c.spaces.isJoined(space)) this.recompute(vs)
  }

  /** Shows (on) or takes down our board at `position` in a space; NotJoinedError, ExcludedError, OwnerMutedError. */
  share (space: string, on: boolean, position: Vec3): void {
    this.shares.share(this.need(space), on, position)
  }

  /** One chunk of our shared video, to every watcher that wants it; NotSharingError unless we share there. */
  sendVideo (space: string, chunk: VideoChunk): void {
    this.shares.sendVideo(this.need(space), chunk)
  }

  /** Asks the sharer of the board of `did` we view for a keyframe (at most every KEYFRAME_REQUEST_MIN_MS); false when not sent. */
  requestKeyframe (space: string, did: string): boolean {
    return this.shares.requestKeyframe(this.need(space), did)
  }

  /** The boards of a space: ours (sharing), those we know and which we view. */
  boards (space: string): ReturnType<Shares['state']> {
    this.need(space)
    return this.shares.state(space)
  }

  /** A personal voice mute of `did`, in one space or (space undefined) in all: in effect at once, kept in the store when the promise resolves. */
  async setVoiceMuted (space: string | undefined, did: string, muted: boolean): Promise<void> {
    if (typeof did !== 'string' || did === '') throw new TypeError('did must be a non-empty string')
    const key = `${space ?? '*'}|${did}`
    if (muted) this.voiceMuted.add(key); else this.voiceMuted.delete(key)
    const vs = space == null ? undefined : this.spaces.get(space)
    for (const s of vs == null ? this.spaces.values() : [vs]) if (this.c.spaces.isJoined(s.id)) this.recompute(s)
    if (this.c.store == null) return
    if (muted) await this.c.store.put(`m/${key}`, new Uint8Array(0)); else await this.c.store.del(`m/${key}`)
  }

  isVoiceMuted (space: string, did: string): boolean {
    return this.voiceMuted.has(`*|${did}`) || this.voiceMuted.has(`${space}|${did}`)
  }

  /** What voice is doing in a space; `dropped` counts the peer's refused frames over all spaces. */
  state (space: string): VoiceState {
    const vs = this.need(space)
    const now = Date.now()
    return {
      listening: vs.listeners > 0,
      sending: vs.lastSentAt > 0 && now - vs.lastSentAt < TALKING_HOLD_MS,
      heard: [...vs.heard],
      voiceMuted: [...new Set([...this.voiceMuted].filter(k => k.startsWith('*|') || k.startsWith(`${space}|`)).map(k => k.slice(k.indexOf('|') + 1)))],
      speakers: [...vs.speakers.entries()].map(([did, s]) => ({ did, level: s.level, talking: isTalking(s.talkingAt, now), receiving: s.frameAt > 0 && now - s.frameAt < TALKING_HOLD_MS })),
      dropped: { ...this.dropped },
      settings: { ...this.settings },
      share: this.shares.state(space)
    }
  }

  // -- who hears whom --------------------------------------------------------------------------------

  /** Why frames of `did` in `space` are not for us, if they are not. */
  private refusal (space: string, did: string): DropReason | undefined {
    if (this.c.spaces.isExcluded(space, did)) return 'excluded'
    if (this.c.spaces.isOwnerMuted(space, did)) return 'owner-muted'
    if (this.c.social.isBlocked(did)) return 'blocked'
    if (this.c.social.isMuted(did) || this.isVoiceMuted(space, did)) return 'voice-muted'
    return undefined
  }

  /** A listener we do not send to: kept out of the space, or blocked by us. */
  private listenerRefused (space: string, did: string): boolean {
    const within = this.spaces.get(space)?.earshot.has(did) === true
    return !within || this.c.spaces.isExcluded(space, did) || this.c.social.isBlocked(did)
  }

  /** Streams to the near (while listening), the heard set, and WANT to match; closes links to members gone or excluded. */
  private recompute (vs: VoiceSpace): void {
    const now = Date.now()
    const me = this.c.identity.did
    const members = this.c.spaces.who(vs.id).filter(m => m.did !== me)
    const byPeer = new Map<string, VoiceMember>(members.map(m => [m.peer, m]))
    for (const link of [...vs.links.values()]) {
      if (link.did == null) {
        if (link.pipes.size === 0 && !link.dialing && !byPeer.has(link.peer)) vs.links.delete(link.peer)
        continue
      }
      const m = byPeer.get(link.peer)
      if (m == null || m.did !== link.did || this.c.spaces.isExcluded(vs.id, link.did)) this.streams.closeLink(vs, link)
    }
    const position = this.c.spaces.me(vs.id).position
    const near = inEarshot(position, members, this.settings.rangeM, MAX_VOICE_LISTENERS)
    // A speaker sends only to members within earshot, whoever asks: a far member's WANT gets nothing.
    vs.earshot = new Set(near.map(m => m.did))
    for (const link of vs.links.values()) if (link.theyWant && (link.did == null || !vs.earshot.has(link.did))) link.theyWant = false
    if (vs.listeners > 0 || this.shares.active(vs.id)) for (const m of members) if (m.near) this.streams.dial(vs, m.peer, now)
    this.shares.recompute(vs, members, this.c.spaces.me(vs.id).position)
    if (vs.listeners > 0) {
      for (const m of near) this.streams.dial(vs, m.peer, now)
      const candidates = near.map(m => ({ did: m.did, position: m.position, talkingAt: vs.speakers.get(m.did)?.talkingAt ?? 0 }))
      vs.heard = chooseHeard(position, candidates, { now, max: this.settings.maxHeard, rangeM: this.settings.rangeM, excluded: did => this.refusal(vs.id, did) != null })
    } else {
      vs.heard = []
    }
    const heard = new Set(vs.heard)
    for (const link of vs.links.values()) {
      const want = link.did != null && heard.has(link.did)
      if (link.out != null && (want !== link.weWant || (want && now - link.wantSentAt >= WANT_REFRESH_MS))) {
        link.weWant = want
        link.wantSentAt = now
        this.streams.write(link.out, encodeWant(want), true)
      }
    }
  }

  /** The periodic work: spaces left, talking that ran out, our stop note, the heard sets. */
  private tick (): void {
    const now = Date.now()
    for (const vs of [...this.spaces.values()]) {
      try {
        if (!this.c.spaces.isJoined(vs.id)) {
          for (const link of [...vs.links.values()]) this.streams.closeLink(vs, link)
          this.spaces.delete(vs.id)
          this.shares.forget(vs.id)
          this.seal.forget(vs.id)
          this.safeDispatchEvent('voice:left', { detail: { space: vs.id } })
          continue
        }
        for (const [did, s] of vs.speakers) {
          this.speaking(vs, did, s, now)
          if (!s.talking && now - Math.max(s.talkingAt, s.frameAt) > SPEAKER_FORGET_MS) vs.speakers.delete(did)
        }
        if (vs.talkingSent && now - vs.lastSentAt >= TALKING_STOP_MS) {
          vs.talkingSent = false
          for (const link of vs.links.values()) if (link.out != null) this.streams.write(link.out, encodeTalking(0), true)
        }
        this.shares.tick(vs, now)
        this.recompute(vs)
      } catch (err) {
        log.error('voice tick %s: %s', vs.id, (err as Error).message)
      }
    }
  }

  /** Emits voice:speaking when a speaker's talking changed. */
  private speaking (vs: VoiceSpace, did: string, s: Speaker, now: number): void {
    const talking = isTalking(s.talkingAt, now)
    if (talking === s.talking) return
    s.talking = talking
    this.safeDispatchEvent('voice:speaking', { detail: { space: vs.id, did, level: talking ? s.level : 0, talking } })
  }

  // -- frames in ---------------------------------------------------------------------------------------

  /** One frame from `link`'s member; never throws: what is not passed on is counted. */
  private take (vs: VoiceSpace, link: Link, bytes: Uint8Array): void {
    const did = link.did as string
    const cipher = this.c.spaces.cipher(vs.id)
    let f
    try {
      const overhead = cipher == null ? 0 : VOICE_CIPHER_OVERHEAD_BYTES
      f = decodeVoiceFrame(bytes, MAX_VOICE_PAYLOAD_BYTES + overhead, MAX_VIDEO_CHUNK_BYTES + overhead)
    } catch (err) {
      this.drop(reasonOf(err as Error))
      return
    }
    if (f.type === 'share' || f.type === 'want-video' || f.type === 'video' || f.type === 'keyframe') { this.shares.take(vs, link, f); return }
    if (f.type === 'want') {
      if (!f.on) link.theyWant = false
      else if (!this.listenerRefused(vs.id, did) && [...vs.links.values()].filter(l => l.theyWant).length < MAX_VOICE_LISTENERS) link.theyWant = true
      return
    }
    const refused = this.refusal(vs.id, did)
    if (refused != null) { this.drop(refused); return }
    const now = Date.now()
    let s = vs.speakers.get(did)
    if (s == null) { s = { level: 0, talkingAt: 0, frameAt: 0, talking: false }; vs.speakers.set(did, s) }
    if (f.type === 'talking') {
      if (now - link.noteAt < TALKING_NOTE_MIN_GAP_MS) { this.drop('rate'); return }
      link.noteAt = now
      const was = s.talking
      s.level = f.level
      s.talkingAt = f.level > 0 ? now : 0
      this.speaking(vs, did, s, now)
      if (s.talking !== was) {
        try { this.recompute(vs) } catch (err) { log('voice recompute %s: %s', vs.id, (err as Error).message) }
      }
      return
    }
    if (!link.weWant) { this.drop('unwanted'); return }
    let data = f.payload
    if (cipher != null) {
      try {
        data = this.seal.open(vs.id, did, cipher, f.payload, audioAad(vs.id, did, f.seq))
      } catch {
        this.drop('decrypt')
        return
      }
      if (data.length > MAX_VOICE_PAYLOAD_BYTES) { this.drop('oversize'); return }
    }
    s.level = f.level
    s.talkingAt = now
    s.frameAt = now
    this.speaking(vs, did, s, now)
    this.safeDispatchEvent('voice:frame', { detail: { space: vs.id, did, seq: f.seq, ts: f.ts, level: f.level, data } })
  }

  private drop (reason: DropReason): void { this.dropped[reason]++ }

  // -- state ---------------------------------------------------------------------------------------

  /** The voice state of a joined space, made on first use; NotJoinedError otherwise. */
  private spaceOf (space: string): VoiceSpace {
    if (!this.c.spaces.isJoined(space)) throw new NotJoinedError(`not in space ${space}`)
    let vs = this.spaces.get(space)
    if (vs == null) {
      vs = { id: space, listeners: 0, links: new Map(), speakers: new Map(), heard: [], lastSentAt: 0, noteAt: 0, talkingSent: false, earshot: new Set() }
      this.spaces.set(space, vs)
    }
    return vs
  }

  private need (space: string): VoiceSpace {
    if (typeof space !== 'string' || space === '') throw new NotJoinedError('a space id is needed')
    return this.spaceOf(space)
  }
}

