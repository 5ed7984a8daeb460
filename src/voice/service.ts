/**
 * The voice service: moves Opus frames between the members of a space over
 * `/peerverse/voice/1.0.0`, one stream per (space, peer pair), each side's stream bound to its did
 * by its signed peer binding (as presence streams are). A listener holds streams to its near
 * members, hears their TALKING notes, picks whom to hear with the pure chooseHeard (hearing.ts)
 * and sends WANT 1/0 to match; a speaker sends AUDIO only to listeners that want it. Every frame
 * it does not pass on is dropped and counted by reason; a stream that breaks a limit is closed
 * and reported to onRejected. Who we are, the spaces and social are reached through the narrow
 * views of index.ts, so this file holds no libp2p and no space internals.
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import { verifyPeerBinding } from '../identity/binding.ts'
import { framed, UnexpectedEOFError, type Framed } from '../net/framed.ts'
import { PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import type { RemotePeer } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { ExcludedError, NotJoinedError, OwnerMutedError, InvalidVoiceOpenError, VoiceNotMemberError, VoiceRateLimitError } from './errors.ts'
import { chooseHeard, isTalking, TALKING_HOLD_MS } from './hearing.ts'
import type { DropReason, VoiceComponents, VoiceEvents, VoiceMember, VoiceState } from './index.ts'
import {
  audioAad, checkAudio, decodeOpen, decodeVoiceFrame, encodeAudio, encodeOpen, encodeTalking, encodeWant, MAX_VOICE_PAYLOAD_BYTES,
  MAX_VOICE_READ_BYTES, VOICE_CIPHER_OVERHEAD_BYTES, VOICE_PROTOCOL, type AudioFrame
} from './wire.ts'

const log = logger('peerverse:voice')

/** Frames (audio and notes) a voice stream may carry a second (twice 50 fps); past it the stream is closed. */
export const VOICE_FRAMES_PER_SECOND = 100
/** Voice streams one peer may hold open to us at once. */
export const MAX_VOICE_STREAMS_PER_PEER = 4
/** Listeners a speaker sends its audio to at most (MAX_NEAR_MEMBERS). */
export const MAX_VOICE_LISTENERS = 32
/** A speaker's TALKING note goes out at most this often while its frames flow; the service's tick too. */
export const TALKING_NOTE_MS = 250
/** Silence after our last frame at which we tell the near that we stopped (TALKING 0). */
export const TALKING_STOP_MS = 2 * TALKING_NOTE_MS
/** How long a stream's opening waits to see its did on that peer in the space (beacons may lag). */
export const VOICE_MEMBER_WAIT_MS = 3_000
/** Wait before dialling a member again after a failed dial. */
export const VOICE_REDIAL_MS = 1_000
/** Our own frames a second (under the peers' limit, notes included), and burst. */
export const OWN_FRAMES_PER_SECOND = VOICE_FRAMES_PER_SECOND * 3 / 4
export const OWN_FRAMES_BURST = VOICE_FRAMES_PER_SECOND / 2

/** Errors that end a stream without fault of the peer (it went away, or we closed it). */
const QUIET_ERRORS = new Set(['StreamResetError', 'AbortError', 'StreamAbortedError', 'StreamClosedError', 'ConnectionClosedError', 'ConnectionClosingError', 'StreamStateError'])

/** One open voice stream. */
interface Pipe { stream: Stream, f: Framed, pending: number, chain: Promise<void> }

/** What we hold with one peer in one space: its streams and who wants whose audio. */
interface Link {
  peer: string
  did?: string
  pipes: Set<Pipe>
  /** The stream we send on (the first opened). */
  out?: Pipe
  theyWant: boolean
  weWant: boolean
  dialing: boolean
  retryAt: number
}

interface Speaker { level: number, talkingAt: number, frameAt: number, talking: boolean }

interface VoiceSpace {
  id: string
  listeners: number
  links: Map<string, Link>
  speakers: Map<string, Speaker>
  heard: string[]
  lastSentAt: number
  noteAt: number
  talkingSent: boolean
}

const emptyDropped = (): Record<DropReason, number> => ({
  oversize: 0, malformed: 0, rate: 0, 'not-member': 0, excluded: 0, 'owner-muted': 0, blocked: 0, 'voice-muted': 0, unwanted: 0, decrypt: 0, 'not-joined': 0
})

/** The drop reason of an error that ended a stream. */
function reasonOf (err: Error): DropReason {
  switch (err.name) {
    case 'VoiceFrameTooLargeError': case 'InvalidDataLengthError': case 'InvalidDataLengthLengthError': return 'oversize'
    case 'VoiceRateLimitError': return 'rate'
    case 'VoiceNotMemberError': case 'PeerBindingMismatchError': case 'InvalidSignatureError': case 'MalformedRecordError': case 'UnexpectedRecordTypeError': case 'RecordTooLargeError': case 'InvalidDidError': return 'not-member'
    case 'ExcludedError': return 'excluded'
    case 'NotJoinedError': return 'not-joined'
    default: return 'malformed'
  }
}

export class VoiceService extends TypedEventEmitter<VoiceEvents> {
  readonly settings: { maxHeard: number, rangeM: number }
  private readonly c: VoiceComponents
  private readonly spaces = new Map<string, VoiceSpace>()
  private readonly inboundCount = new Map<string, number>()
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
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.c.protocols.handle(VOICE_PROTOCOL, this.receive, {
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
    for (const vs of this.spaces.values()) for (const link of [...vs.links.values()]) this.closeLink(vs, link)
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
      for (const link of vs.links.values()) if (link.out != null) this.write(link.out, note, true)
    }
    const cipher = this.c.spaces.cipher(space)
    const data = cipher == null ? frame.data : cipher.encrypt(frame.data, audioAad(space, me, frame.seq))
    const bytes = encodeAudio({ ...frame, data })
    let sent = 0
    for (const link of vs.links.values()) {
      if (sent >= MAX_VOICE_LISTENERS) break
      if (!link.theyWant || link.out == null || link.did == null || this.listenerRefused(space, link.did)) continue
      sent++
      this.write(link.out, bytes, false)
    }
  }

  /** A personal voice mute of `did`, in one space or (space undefined) in all. */
  setVoiceMuted (space: string | undefined, did: string, muted: boolean): void {
    if (typeof did !== 'string' || did === '') throw new TypeError('did must be a non-empty string')
    const key = `${space ?? '*'}|${did}`
    if (muted) this.voiceMuted.add(key); else this.voiceMuted.delete(key)
    const vs = space == null ? undefined : this.spaces.get(space)
    for (const s of vs == null ? this.spaces.values() : [vs]) if (this.c.spaces.isJoined(s.id)) this.recompute(s)
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
      speakers: [...vs.speakers.entries()].map(([did, s]) => ({ did, level: s.level, talking: isTalking(s.talkingAt, now), receiving: s.frameAt > 0 && now - s.frameAt < TALKING_HOLD_MS })),
      dropped: { ...this.dropped },
      settings: { ...this.settings }
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
    return this.c.spaces.isExcluded(space, did) || this.c.social.isBlocked(did)
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
      if (m == null || m.did !== link.did || this.c.spaces.isExcluded(vs.id, link.did)) this.closeLink(vs, link)
    }
    if (vs.listeners > 0) {
      const near = members.filter(m => m.near)
      for (const m of near) this.dial(vs, m.peer, now)
      const position = this.c.spaces.me(vs.id).position
      const candidates = near.map(m => ({ did: m.did, position: m.position, talkingAt: vs.speakers.get(m.did)?.talkingAt ?? 0 }))
      vs.heard = chooseHeard(position, candidates, { now, max: this.settings.maxHeard, rangeM: this.settings.rangeM, excluded: did => this.refusal(vs.id, did) != null })
    } else {
      vs.heard = []
    }
    const heard = new Set(vs.heard)
    for (const link of vs.links.values()) {
      const want = link.did != null && heard.has(link.did)
      if (want !== link.weWant && link.out != null) {
        link.weWant = want
        this.write(link.out, encodeWant(want), true)
      }
    }
  }

  /** The periodic work: spaces left, talking that ran out, our stop note, the heard sets. */
  private tick (): void {
    const now = Date.now()
    for (const vs of [...this.spaces.values()]) {
      try {
        if (!this.c.spaces.isJoined(vs.id)) {
          for (const link of [...vs.links.values()]) this.closeLink(vs, link)
          this.spaces.delete(vs.id)
          continue
        }
        for (const [did, s] of vs.speakers) {
          this.speaking(vs, did, s, now)
          if (!s.talking && now - Math.max(s.talkingAt, s.frameAt) > 10 * TALKING_HOLD_MS) vs.speakers.delete(did)
        }
        if (vs.talkingSent && now - vs.lastSentAt >= TALKING_STOP_MS) {
          vs.talkingSent = false
          for (const link of vs.links.values()) if (link.out != null) this.write(link.out, encodeTalking(0), true)
        }
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
      f = decodeVoiceFrame(bytes, MAX_VOICE_PAYLOAD_BYTES + (cipher == null ? 0 : VOICE_CIPHER_OVERHEAD_BYTES))
    } catch (err) {
      this.drop(reasonOf(err as Error))
      return
    }
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
      s.level = f.level
      s.talkingAt = f.level > 0 ? now : 0
      this.speaking(vs, did, s, now)
      this.recompute(vs)
      return
    }
    if (!link.weWant) { this.drop('unwanted'); return }
    let data = f.payload
    if (cipher != null) {
      try {
        data = cipher.decrypt(f.payload, audioAad(vs.id, did, f.seq))
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

  // -- streams -------------------------------------------------------------------------------------

  /** The voice protocol's handler: a stream a peer opened to us. */
  readonly receive = (stream: Stream, remote: RemotePeer): void => {
    void this.inbound(stream, remote.peer)
  }

  private async inbound (stream: Stream, peer: string): Promise<void> {
    const count = this.inboundCount.get(peer) ?? 0
    if (count >= MAX_VOICE_STREAMS_PER_PEER) {
      this.fail(peer, stream, new VoiceRateLimitError(`more than ${MAX_VOICE_STREAMS_PER_PEER} voice streams from one peer`))
      return
    }
    this.inboundCount.set(peer, count + 1)
    try {
      const f = framed(stream, { maxFrameBytes: MAX_VOICE_READ_BYTES })
      const first = await f.read({ signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })
      if (first == null) throw new UnexpectedEOFError('the stream ended before it opened')
      const open = decodeOpen(first)
      const vs = this.spaceOf(open.space)
      const did = await this.verifyOpen(open.space, peer, open.binding)
      await f.write(encodeOpen(open.space, this.c.identity.binding), { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })
      const link = this.link(vs, peer)
      link.did = did
      await this.run(vs, link, { stream, f, pending: 0, chain: Promise.resolve() })
    } catch (err) {
      this.fail(peer, stream, err as Error)
    } finally {
      const n = (this.inboundCount.get(peer) ?? 1) - 1
      if (n <= 0) this.inboundCount.delete(peer); else this.inboundCount.set(peer, n)
    }
  }

  /** Opens our stream to a near member, in the background, unless one is open, opening or failed lately. */
  private dial (vs: VoiceSpace, peer: string, now: number): void {
    const existing = vs.links.get(peer)
    if (existing != null && (existing.out != null || existing.dialing || now < existing.retryAt)) return
    const link = existing ?? this.link(vs, peer)
    link.dialing = true
    void (async () => {
      let stream: Stream | undefined
      let opened = false
      try {
        stream = await this.c.protocols.dial(peer, VOICE_PROTOCOL, { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS), runOnLimitedConnection: true })
        const f = framed(stream, { maxFrameBytes: MAX_VOICE_READ_BYTES })
        await f.write(encodeOpen(vs.id, this.c.identity.binding), { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })
        const first = await f.read({ signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS + VOICE_MEMBER_WAIT_MS) })
        if (first == null) throw new UnexpectedEOFError('the peer closed before it opened')
        opened = true
        const open = decodeOpen(first)
        if (open.space !== vs.id) throw new InvalidVoiceOpenError(`answered for space ${open.space}, not ${vs.id}`)
        link.did = await this.verifyOpen(vs.id, peer, open.binding)
        link.dialing = false
        if (vs.links.get(peer) !== link) { stream.abort(new Error('closed')); return }
        await this.run(vs, link, { stream, f, pending: 0, chain: Promise.resolve() })
      } catch (err) {
        link.retryAt = Date.now() + VOICE_REDIAL_MS
        if (stream != null && opened) this.fail(peer, stream, err as Error)
        else {
          stream?.abort(err as Error)
          log('voice dial %s: %s', peer, (err as Error).message)
        }
      } finally {
        link.dialing = false
        if (link.pipes.size === 0 && vs.links.get(peer) === link && link.out == null && Date.now() >= link.retryAt) vs.links.delete(peer)
      }
    })()
  }

  /** Checks an opening's binding: it names this peer, and its did is a member we see on it, not kept out. */
  private async verifyOpen (space: string, peer: string, binding: Uint8Array): Promise<string> {
    const { did } = await verifyPeerBinding(binding, peer)
    if (this.c.spaces.isExcluded(space, did)) throw new ExcludedError(`${did} is kept out of ${space}`)
    const deadline = Date.now() + VOICE_MEMBER_WAIT_MS
    while (!this.c.spaces.who(space).some(m => m.did === did && m.peer === peer)) {
      if (Date.now() >= deadline || !this.c.spaces.isJoined(space)) throw new VoiceNotMemberError(`${did} is not a member we see on ${peer} in ${space}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return did
  }

  /** Reads a verified stream until it ends; a limit broken ends it with a named error. */
  private async run (vs: VoiceSpace, link: Link, pipe: Pipe): Promise<void> {
    link.pipes.add(pipe)
    link.out ??= pipe
    this.recompute(vs)
    const bucket = new TokenBuckets(VOICE_FRAMES_PER_SECOND, VOICE_FRAMES_PER_SECOND)
    try {
      while (true) {
        let frame: Uint8Array | null
        try {
          frame = await pipe.f.read()
        } catch (err) {
          if ((err as Error).name === 'UnexpectedEOFError') break
          throw err
        }
        if (frame == null) break
        if (!bucket.take('f')) throw new VoiceRateLimitError(`more than ${VOICE_FRAMES_PER_SECOND} voice frames a second`)
        this.take(vs, link, frame)
      }
      await pipe.stream.close().catch(() => {})
    } finally {
      this.unpipe(vs, link, pipe)
    }
  }

  private unpipe (vs: VoiceSpace, link: Link, pipe: Pipe): void {
    link.pipes.delete(pipe)
    if (link.out === pipe) link.out = link.pipes.values().next().value
    if (link.pipes.size === 0 && !link.dialing && vs.links.get(link.peer) === link) vs.links.delete(link.peer)
  }

  private closeLink (vs: VoiceSpace, link: Link): void {
    if (vs.links.get(link.peer) === link) vs.links.delete(link.peer)
    for (const pipe of link.pipes) void pipe.stream.close().catch(() => { pipe.stream.abort(new Error('closed')) })
  }

  /** Ends a stream for `err`; a fault of the peer is counted and reported. */
  private fail (peer: string, stream: Stream, err: Error): void {
    stream.abort(err)
    if (QUIET_ERRORS.has(err.name)) return
    this.drop(reasonOf(err))
    this.c.onRejected(peer, VOICE_PROTOCOL, err)
  }

  /** Queues a frame on a stream: notes always, audio only when nothing is queued (late audio is dropped, not queued). */
  private write (pipe: Pipe, bytes: Uint8Array, control: boolean): void {
    if (!control && pipe.pending > 0) return
    pipe.pending++
    pipe.chain = pipe.chain.then(async () => { await pipe.f.write(bytes) }).then(() => { pipe.pending-- }, err => {
      pipe.pending--
      pipe.stream.abort(err as Error)
    })
  }

  // -- state ---------------------------------------------------------------------------------------

  private link (vs: VoiceSpace, peer: string): Link {
    let link = vs.links.get(peer)
    if (link == null) {
      link = { peer, pipes: new Set(), theyWant: false, weWant: false, dialing: false, retryAt: 0 }
      vs.links.set(peer, link)
    }
    return link
  }

  /** The voice state of a joined space, made on first use; NotJoinedError otherwise. */
  private spaceOf (space: string): VoiceSpace {
    if (!this.c.spaces.isJoined(space)) throw new NotJoinedError(`not in space ${space}`)
    let vs = this.spaces.get(space)
    if (vs == null) {
      vs = { id: space, listeners: 0, links: new Map(), speakers: new Map(), heard: [], lastSentAt: 0, noteAt: 0, talkingSent: false }
      this.spaces.set(space, vs)
    }
    return vs
  }

  private need (space: string): VoiceSpace {
    if (typeof space !== 'string' || space === '') throw new NotJoinedError('a space id is needed')
    return this.spaceOf(space)
  }
}
