/**
 * The voice capability's public face: talk to the members near you in a space. The browser
 * encodes Opus and hands frames to its own peer; the peer carries them over the libp2p
 * connections it has (`/peerverse/voice/2.0.0`), only to listeners that asked for them, and
 * decides who a listener hears (range, the bound, bans, owner mutes, blocks and mutes), sealing
 * audio to the members of a private space. Build it with `voice(init)(components)`; it reaches
 * spaces and social only through the narrow views below. Its events (VOICE_EVENTS) are the API's
 * `voice:*` events; `voice:frame` is high rate and goes only to the voice WebSocket.
 */
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { ProtocolPort, RejectSink } from '../net/ports.ts'
import type { BytesSublevel } from '../store/store.ts'
import { HEARING_RANGE_M, MAX_HEARD_SPEAKERS, type Position } from './hearing.ts'
import { VoiceService } from './service.ts'
import type { BoardEvent, VideoEvent } from './share.ts'

export interface VoiceInit {
  /** Speakers a listener receives at once (default MAX_HEARD_SPEAKERS). */
  maxHeard?: number
  /** Hearing range in metres (default HEARING_RANGE_M). */
  rangeM?: number
}

export interface VoiceIdentity {
  did: string
  key: Ed25519Key
  /** Our signed peer binding (user key -> this peer), the opening of every voice stream. */
  binding: Uint8Array
}

/** A member as the space shows it. */
export interface VoiceMember {
  did: string
  peer: string
  position: Position
  near: boolean
}

/**
 * A private space's group keys, as voice needs them: the current epoch and the key of an epoch we
 * hold. Voice derives each sender's own key from them (seal.ts) rather than sealing group messages.
 */
export interface VoiceCipher {
  epoch: () => number
  key: (epoch: number) => Uint8Array | undefined
}

/** What voice asks of the space capability (node.ts adapts the SpaceService to it). */
export interface VoiceSpaces {
  isJoined: (space: string) => boolean
  who: (space: string) => VoiceMember[]
  me: (space: string) => { position: Position }
  /** Banned or kicked by the owner's policy (or not a member of a private space). */
  isExcluded: (space: string, did: string) => boolean
  /** On the owner's mute list. */
  isOwnerMuted: (space: string, did: string) => boolean
  /** The space's group keys in a private space; undefined for a public one. */
  cipher: (space: string) => VoiceCipher | undefined
}

/** What voice asks of social: the user's blocks and mutes. */
export interface VoiceSocial {
  isBlocked: (did: string) => boolean
  isMuted: (did: string) => boolean
}

export interface VoiceComponents {
  protocols: ProtocolPort
  onRejected: RejectSink
  identity: VoiceIdentity
  spaces: VoiceSpaces
  social: VoiceSocial
  /** The capability's sublevel of the node's store, where personal voice mutes are kept (memory only without it). */
  store?: BytesSublevel
}

/** Why an inbound frame was not passed on. */
export const DROP_REASONS = ['oversize', 'malformed', 'rate', 'not-member', 'excluded', 'owner-muted', 'blocked', 'voice-muted', 'unwanted', 'decrypt', 'not-joined'] as const
export type DropReason = typeof DROP_REASONS[number]

export interface VoiceFrameEvent { space: string, did: string, seq: number, ts: number, level: number, data: Uint8Array }
export interface VoiceSpeakingEvent { space: string, did: string, level: number, talking: boolean }

export interface VoiceEvents {
  /** We are no longer in a space voice was used in: its streams are closed and its state gone (a voice or video socket for it closes). */
  'voice:left': CustomEvent<{ space: string }>
  /** A member's board appeared, moved or went away. */
  'voice:board': CustomEvent<BoardEvent>
  /** A viewer asked our board for a keyframe (at most every KEYFRAME_REQUEST_MIN_MS a space): the video socket tells our client. */
  'voice:keyframe': CustomEvent<{ space: string }>
  /** A chunk of the video of a board we view, opened (high rate: the voice WebSocket only). */
  'voice:video': CustomEvent<VideoEvent>
  /** A heard speaker's frame, decrypted (high rate: the voice WebSocket only). */
  'voice:frame': CustomEvent<VoiceFrameEvent>
  /** A member started or stopped talking (on change only). */
  'voice:speaking': CustomEvent<VoiceSpeakingEvent>
}

/** The names of the events a voice service emits. */
export const VOICE_EVENTS = ['voice:frame', 'voice:speaking'] as const
/** The events of sharing, carried by a video WebSocket only (not on the JSON event stream). */
export const SHARE_EVENTS = ['voice:board', 'voice:video', 'voice:keyframe'] as const

export interface VoiceState {
  listening: boolean
  sending: boolean
  /** The speakers we ask audio of now, nearest first. */
  heard: string[]
  /** The members we muted for ourselves in this space (or in every space). */
  voiceMuted: string[]
  speakers: Array<{ did: string, level: number, talking: boolean, receiving: boolean }>
  dropped: Record<DropReason, number>
  settings: { maxHeard: number, rangeM: number }
  /** Boards: whether we share one, watch, and the members' boards we know (and view). */
  share: { sharing: boolean, watching: boolean, boards: Array<{ did: string, position: [number, number, number], viewing: boolean }> }
}

/** The voice capability: `voice({ maxHeard, rangeM })({ protocols, onRejected, identity, spaces, social })`. */
export function voice (init: VoiceInit = {}): (components: VoiceComponents) => VoiceService {
  return components => new VoiceService({ maxHeard: init.maxHeard ?? MAX_HEARD_SPEAKERS, rangeM: init.rangeM ?? HEARING_RANGE_M }, components)
}

export { VoiceService } from './service.ts'
export { MAX_VOICE_LISTENERS, MAX_VOICE_STREAMS_PER_PEER, TALKING_NOTE_MS, VOICE_FRAMES_PER_SECOND, WANT_REFRESH_MS, TALKING_NOTE_MIN_GAP_MS, MAX_QUEUED_AUDIO_FRAMES, MAX_QUEUED_CONTROL_FRAMES } from './service.ts'
export { chooseHeard, inEarshot, HEARING_RANGE_M, MAX_HEARD_SPEAKERS, TALKING_HOLD_MS, type Candidate, type Position } from './hearing.ts'
export {
  VOICE_PROTOCOL, MAX_VOICE_PAYLOAD_BYTES, MAX_VOICE_FRAME_BYTES, MAX_VOICE_READ_BYTES, MAX_VOICE_CLIENT_MESSAGE_BYTES, VOICE_HEADER_BYTES,
  VOICE_CIPHER_OVERHEAD_BYTES, audioAad, decodeClientFrame, decodeClientFrameFromPeer, decodeVoiceFrame, encodeAudio, encodeClientFrame,
  encodeOpen, encodeTalking, encodeWant, type AudioFrame
} from './wire.ts'
export * from './errors.ts'
export { MAX_SEALS_PER_VOICE_KEY, MAX_VOICE_KEYS_CACHED, VOICE_KEY_INFO, VOICE_SEAL_OVERHEAD_BYTES, VoiceOpenError, VoiceSeal, VoiceSealError } from './seal.ts'
export {
  KEYFRAME_REQUEST_MIN_MS, MAX_VIEWED_BOARDS, OWN_VIDEO_CHUNKS_PER_SECOND, SHARE_HOLD_MS, SHARE_NOTE_MS, VIDEO_CHUNKS_PER_SECOND, VIDEO_MAX_BITRATE, VIDEO_MAX_FPS,
  VIDEO_MAX_HEIGHT, VIDEO_MAX_WIDTH, type BoardEvent, type VideoEvent
} from './share.ts'
export { MAX_VIDEO_QUEUED_CHUNKS } from './streams.ts'
export {
  MAX_VIDEO_CHUNK_BYTES, MAX_VIDEO_CHUNKS_PER_FRAME, MAX_VIDEO_FRAME_BYTES, SHARE_FRAME_BYTES, VIDEO_HEADER_BYTES, checkVideo, decodeForClient,
  decodeVideoClientFrame, encodeForClient, encodeKeyframe, encodeShare, encodeVideo, encodeWantVideo, videoAad, type Vec3, type VideoChunk
} from './wire.ts'
