/**
 * The voice streams: `/peerverse/voice/2.0.0`, one stream per (space, peer pair), opened by the
 * peer that first needs it, each side's opening { space, binding } binding it to that side's did
 * (verified as presence streams are: the binding names the peer, the did is a member we see on it
 * and not kept out). This file only keeps the streams, checks their limits (frames a second,
 * streams a peer, frame size) and hands each frame to the service (service.ts), which decides
 * what to do with it; a stream that breaks a limit is closed, counted and reported.
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { verifyPeerBinding } from '../identity/binding.ts'
import { framed, UnexpectedEOFError, type Framed } from '../net/framed.ts'
import { PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import type { RemotePeer } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { ExcludedError, InvalidVoiceOpenError, VoiceBlockedError, VoiceNotMemberError, VoiceRateLimitError } from './errors.ts'
import type { DropReason, VoiceComponents } from './index.ts'
import { VIDEO_CHUNKS_PER_SECOND } from './share.ts'
import { decodeOpen, encodeOpen, MAX_VOICE_READ_BYTES, VIDEO, VOICE_PROTOCOL } from './wire.ts'

const log = logger('peerverse:voice')

/**
 * Frames (audio and notes) one peer may send us a second in one space (twice 50 fps), over all its
 * streams there together: the budget is kept per (space, peer), so more streams or a stream
 * opened again neither multiply nor refill it. Past it the stream that carried the frame is closed.
 */
export const VOICE_FRAMES_PER_SECOND = 100
/** Voice streams one peer may hold open to us at once. */
export const MAX_VOICE_STREAMS_PER_PEER = 4
/** How long a stream's opening waits to see its did on that peer in the space (beacons may lag). */
export const VOICE_MEMBER_WAIT_MS = 3_000
/** How often that wait looks at the space's members again. */
export const VOICE_MEMBER_POLL_MS = 100
/** Wait before dialling a member again after a failed dial. */
export const VOICE_REDIAL_MS = 1_000
/** Audio frames queued on one stream at most (200 ms at 50 a second); past it the newest is dropped, as late audio is worth nothing. */
export const MAX_QUEUED_AUDIO_FRAMES = 10
/** Control frames (notes, WANTs) queued on one stream at most: past it the peer is not reading, and the stream is closed. */
export const MAX_QUEUED_CONTROL_FRAMES = 64

/** Errors that end a stream without fault of the peer (it went away, or we closed it). */
const QUIET_ERRORS = new Set(['StreamResetError', 'AbortError', 'StreamAbortedError', 'StreamClosedError', 'ConnectionClosedError', 'ConnectionClosingError', 'StreamStateError'])

/**
 * One open voice stream and what waits to be written on it: control frames and audio in one queue
 * (in the order given), video chunks in another, written only when the first is empty, so audio
 * never waits behind a keyframe's chunks (at most behind the one chunk being written).
 */
export interface Pipe {
  stream: Stream
  f: Framed
  queue: Array<{ bytes: Uint8Array, audio: boolean }>
  video: Uint8Array[]
  /** Control frames and audio frames waiting (or being written). */
  controlPending: number
  audioPending: number
  writing: boolean
}

/** A new pipe on an opened stream. */
export const pipeOf = (stream: Stream, f: Framed): Pipe => ({ stream, f, queue: [], video: [], controlPending: 0, audioPending: 0, writing: false })

/** VIDEO chunks queued on one stream at most; past it ours are dropped (a keyframe is under 96). */
export const MAX_VIDEO_QUEUED_CHUNKS = 128

/** What we hold with one peer in one space: its streams and who wants whose audio. */
export interface Link {
  peer: string
  did?: string
  pipes: Set<Pipe>
  /** The stream we send on (the first opened). */
  out?: Pipe
  theyWant: boolean
  weWant: boolean
  /** When we last said our WANT on this link (said again every WANT_REFRESH_MS, and on each new stream). */
  wantSentAt: number
  dialing: boolean
  retryAt: number
  /** When the member's last TALKING note was taken (notes closer than TALKING_NOTE_MIN_GAP_MS are dropped as 'rate'). */
  noteAt: number
}

export interface Speaker { level: number, talkingAt: number, frameAt: number, talking: boolean }

export interface VoiceSpace {
  id: string
  listeners: number
  links: Map<string, Link>
  speakers: Map<string, Speaker>
  heard: string[]
  lastSentAt: number
  noteAt: number
  talkingSent: boolean
  /** The members within earshot (HEARING range, the nearest MAX_VOICE_LISTENERS), as of the last recompute: the only ones we send to. */
  earshot: Set<string>
}

export function reasonOf (err: Error): DropReason {
  switch (err.name) {
    case 'VoiceFrameTooLargeError': case 'InvalidDataLengthError': case 'InvalidDataLengthLengthError': return 'oversize'
    case 'VoiceRateLimitError': return 'rate'
    case 'VoiceNotMemberError': case 'PeerBindingMismatchError': case 'InvalidSignatureError': case 'MalformedRecordError': case 'UnexpectedRecordTypeError': case 'RecordTooLargeError': case 'InvalidDidError': return 'not-member'
    case 'ExcludedError': return 'excluded'
    case 'VoiceBlockedError': return 'blocked'
    case 'NotJoinedError': return 'not-joined'
    default: return 'malformed'
  }
}

/** What the streams ask of the service. */
export interface StreamHost {
  /** The voice state of a joined space (NotJoinedError otherwise). */
  spaceOf: (space: string) => VoiceSpace
  /** One frame from a link's member (never throws). */
  take: (vs: VoiceSpace, link: Link, bytes: Uint8Array) => void
  /** Recomputes the heard set and WANTs of a space (a stream opened). */
  recompute: (vs: VoiceSpace) => void
  drop: (reason: DropReason) => void
}

export class VoiceStreams {
  private readonly c: VoiceComponents
  private readonly host: StreamHost
  private readonly inboundCount = new Map<string, number>()
  /** Frame budgets per (space, peer), shared by all that peer's streams in the space. */
  private readonly frameBuckets = new TokenBuckets(VOICE_FRAMES_PER_SECOND, VOICE_FRAMES_PER_SECOND)
  private readonly videoBuckets = new TokenBuckets(VIDEO_CHUNKS_PER_SECOND, VIDEO_CHUNKS_PER_SECOND)

  constructor (components: VoiceComponents, host: StreamHost) {
    this.c = components
    this.host = host
  }

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
      const vs = this.host.spaceOf(open.space)
      const did = await this.verifyOpen(open.space, peer, open.binding)
      await f.write(encodeOpen(open.space, this.c.identity.binding), { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) })
      const link = this.link(vs, peer)
      link.did = did
      await this.run(vs, link, pipeOf(stream, f))
    } catch (err) {
      this.fail(peer, stream, err as Error)
    } finally {
      const n = (this.inboundCount.get(peer) ?? 1) - 1
      if (n <= 0) this.inboundCount.delete(peer); else this.inboundCount.set(peer, n)
    }
  }

  /** Opens our stream to a near member, in the background, unless one is open, opening or failed lately. */
  dial (vs: VoiceSpace, peer: string, now: number): void {
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
        await this.run(vs, link, pipeOf(stream, f))
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
    // A member the user blocked is out of the space's sight (who); its stream is refused at once.
    if (this.c.social.isBlocked(did)) throw new VoiceBlockedError(`${did} is blocked`)
    const deadline = Date.now() + VOICE_MEMBER_WAIT_MS
    while (!this.c.spaces.who(space).some(m => m.did === did && m.peer === peer)) {
      if (Date.now() >= deadline || !this.c.spaces.isJoined(space)) throw new VoiceNotMemberError(`${did} is not a member we see on ${peer} in ${space}`)
      await new Promise(resolve => setTimeout(resolve, VOICE_MEMBER_POLL_MS))
    }
    return did
  }

  /** Reads a verified stream until it ends; a limit broken ends it with a named error. */
  private async run (vs: VoiceSpace, link: Link, pipe: Pipe): Promise<void> {
    link.pipes.add(pipe)
    link.out ??= pipe
    link.wantSentAt = 0
    this.host.recompute(vs)
    const key = `${vs.id}\n${link.peer}`
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
        // Video chunks have their own budget; past it they are dropped, the stream (and its audio) kept.
        if (frame[0] === VIDEO) {
          if (!this.videoBuckets.take(key)) { this.host.drop('rate'); continue }
        } else if (!this.frameBuckets.take(key)) throw new VoiceRateLimitError(`more than ${VOICE_FRAMES_PER_SECOND} voice frames a second from one peer in one space`)
        this.host.take(vs, link, frame)
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

  closeLink (vs: VoiceSpace, link: Link): void {
    if (vs.links.get(link.peer) === link) vs.links.delete(link.peer)
    for (const pipe of link.pipes) void pipe.stream.close().catch(() => { pipe.stream.abort(new Error('closed')) })
  }

  /** Ends a stream for `err`; a fault of the peer is counted and reported. */
  private fail (peer: string, stream: Stream, err: Error): void {
    stream.abort(err)
    if (QUIET_ERRORS.has(err.name)) return
    this.host.drop(reasonOf(err))
    if (err.name === 'VoiceBlockedError') return
    this.c.onRejected(peer, VOICE_PROTOCOL, err)
  }

  /** Queues a frame on a stream: notes always, audio while fewer than MAX_QUEUED_AUDIO_FRAMES wait (later audio is dropped, not queued). */
  write (pipe: Pipe, bytes: Uint8Array, control: boolean): void {
    if (!control && pipe.audioPending >= MAX_QUEUED_AUDIO_FRAMES) return
    if (control && pipe.controlPending >= MAX_QUEUED_CONTROL_FRAMES) {
      pipe.stream.abort(new VoiceRateLimitError(`more than ${MAX_QUEUED_CONTROL_FRAMES} control frames wait on a stream the peer does not read`))
      return
    }
    if (control) pipe.controlPending++; else pipe.audioPending++
    pipe.queue.push({ bytes, audio: !control })
    void this.pump(pipe)
  }

  /** Queues a video chunk on a stream unless MAX_VIDEO_QUEUED_CHUNKS wait (then it is dropped: the next keyframe recovers). */
  writeVideo (pipe: Pipe, bytes: Uint8Array): void {
    if (pipe.video.length >= MAX_VIDEO_QUEUED_CHUNKS) return
    pipe.video.push(bytes)
    void this.pump(pipe)
  }

  /** Writes what waits on a pipe, one frame at a time: control and audio first, then video. */
  private async pump (pipe: Pipe): Promise<void> {
    if (pipe.writing) return
    pipe.writing = true
    try {
      while (true) {
        const next = pipe.queue[0]
        const bytes = next?.bytes ?? pipe.video[0]
        if (bytes == null) break
        try {
          await pipe.f.write(bytes)
        } catch (err) {
          pipe.queue.length = 0
          pipe.video.length = 0
          pipe.controlPending = pipe.audioPending = 0
          pipe.stream.abort(err as Error)
          break
        }
        if (next != null) {
          pipe.queue.shift()
          if (next.audio) pipe.audioPending--; else pipe.controlPending--
        } else {
          pipe.video.shift()
        }
      }
    } finally {
      pipe.writing = false
    }
  }

  /** The link with `peer` in a space, made on first use. */
  link (vs: VoiceSpace, peer: string): Link {
    let link = vs.links.get(peer)
    if (link == null) {
      link = { peer, pipes: new Set(), theyWant: false, weWant: false, wantSentAt: 0, dialing: false, retryAt: 0, noteAt: 0 }
      vs.links.set(peer, link)
    }
    return link
  }
}
