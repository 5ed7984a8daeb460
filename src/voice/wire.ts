/**
 * Voice on the wire: the frames of `/peerverse/voice/2.0.0` between peers, and of the voice
 * WebSocket between a peer and its browser client, with their limits. Pure encode and decode;
 * each decoder throws a named error (InvalidVoiceFrameError, VoiceFrameTooLargeError) so the
 * service can drop and count what it refuses.
 *
 * Peer to peer, after the DAG-CBOR opening { space, binding } from each side:
 *   0x01 AUDIO    [0x01][seq u32 BE][ts u32 BE][level u8][payload]  (payload sealed in a private space, seal.ts)
 *   0x02 WANT     [0x02][0|1]
 *   0x03 TALKING  [0x03][level u8]
 *   0x04 SHARE    [0x04][on u8][x f32 BE][y f32 BE][z f32 BE]  (a board shown at that position, or gone)
 *   0x05 WANT_VIDEO [0x05][0|1]
 *   0x06 VIDEO    [0x06][seq u32 BE][ts u32 BE][flags u8, 1 = keyframe][index u8][count u8][payload]
 *                 (one chunk of a VP8 frame; payload sealed in a private space)
 *   0x07 KEYFRAME [0x07]  (a viewer asks the board's sharer for a keyframe, at most every KEYFRAME_REQUEST_MIN_MS)
 * Client to peer: an AUDIO frame with the Opus packet. Peer to client:
 *   [0x01][didLen u8][did utf8][seq u32 BE][ts u32 BE][level u8][opus]
 * On a video socket (?media=video) the client sends SHARE and VIDEO frames as above, and KEYFRAME
 * [0x07][didLen u8][did utf8] to ask that member's board for a keyframe; the peer sends each
 * SHARE and VIDEO as [type][didLen u8][did utf8][the peer-to-peer frame after its type byte], and
 * [0x07] when a viewer asks our board for a keyframe.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { InvalidVoiceFrameError, InvalidVoiceOpenError, VoiceFrameTooLargeError } from './errors.ts'
import { MAX_VIDEO_CHUNK_BYTES, MAX_VIDEO_FRAME_BYTES } from './video-limits.ts'

/** 2.0.0: payloads in a private space are sealed under each sender's own key (seal.ts), not as group messages. */
export const VOICE_PROTOCOL = '/peerverse/voice/2.0.0'

export const AUDIO = 0x01
export const WANT = 0x02
export const TALKING = 0x03
export const SHARE = 0x04
export const WANT_VIDEO = 0x05
export const VIDEO = 0x06
export const KEYFRAME = 0x07

export { MAX_VIDEO_CHUNK_BYTES, MAX_VIDEO_FRAME_BYTES }
/** Chunks one frame may be cut into. */
export const MAX_VIDEO_CHUNKS_PER_FRAME = MAX_VIDEO_FRAME_BYTES / MAX_VIDEO_CHUNK_BYTES
/** type(1) ‖ seq(4) ‖ ts(4) ‖ flags(1) ‖ index(1) ‖ count(1). */
export const VIDEO_HEADER_BYTES = 12
/** type(1) ‖ on(1) ‖ x, y, z (f32). */
export const SHARE_FRAME_BYTES = 14

/** Largest Opus packet carried (Opus at 64 kbps in 20 ms frames is 160 bytes). */
export const MAX_VOICE_PAYLOAD_BYTES = 400
/** type(1) ‖ seq(4) ‖ ts(4) ‖ level(1). */
export const VOICE_HEADER_BYTES = 10
/** Bytes sealing may add to a payload in a private space (VOICE_SEAL_OVERHEAD_BYTES is 45; the rest is headroom). */
export const VOICE_CIPHER_OVERHEAD_BYTES = 64
/** Largest AUDIO frame on a voice stream. */
export const MAX_VOICE_FRAME_BYTES = VOICE_HEADER_BYTES + MAX_VOICE_PAYLOAD_BYTES + VOICE_CIPHER_OVERHEAD_BYTES
/** Largest frame read from a voice stream at all (the opening { space, binding } is the largest); past it the stream is closed. */
export const MAX_VOICE_READ_BYTES = 2048
/** Largest message a voice WebSocket client may send. */
export const MAX_VOICE_CLIENT_MESSAGE_BYTES = 2048
/** Longest did in a peer-to-client frame (its length is one byte). */
export const MAX_VOICE_DID_BYTES = 255

export interface AudioFrame {
  seq: number
  ts: number
  level: number
  data: Uint8Array
}

export type Vec3 = [number, number, number]

/** One chunk of an encoded video frame. */
export interface VideoChunk {
  seq: number
  ts: number
  key: boolean
  index: number
  count: number
  data: Uint8Array
}

export type VoiceFrame =
  | { type: 'audio', seq: number, ts: number, level: number, payload: Uint8Array }
  | { type: 'want', on: boolean }
  | { type: 'talking', level: number }
  | { type: 'share', on: boolean, position: Vec3 }
  | { type: 'want-video', on: boolean }
  | { type: 'video', seq: number, ts: number, key: boolean, index: number, count: number, payload: Uint8Array }
  | { type: 'keyframe' }

const isU32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff
const isU8 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 255

/** Checks a frame of our own (from the client or the caller); InvalidVoiceFrameError or VoiceFrameTooLargeError. */
export function checkAudio (frame: AudioFrame, maxPayload = MAX_VOICE_PAYLOAD_BYTES): void {
  if (frame == null || typeof frame !== 'object') throw new InvalidVoiceFrameError('a voice frame must be { seq, ts, level, data }')
  if (!isU32(frame.seq)) throw new InvalidVoiceFrameError('seq must be a u32')
  if (!isU32(frame.ts)) throw new InvalidVoiceFrameError('ts must be a u32')
  if (!isU8(frame.level)) throw new InvalidVoiceFrameError('level must be 0-255')
  if (!(frame.data instanceof Uint8Array) || frame.data.length === 0) throw new InvalidVoiceFrameError('data must be non-empty bytes')
  if (frame.data.length > maxPayload) throw new VoiceFrameTooLargeError(`payload of ${frame.data.length} bytes, over ${maxPayload}`)
}

/** An AUDIO frame (peer to peer, and client to peer). */
export function encodeAudio (frame: AudioFrame): Uint8Array {
  const out = new Uint8Array(VOICE_HEADER_BYTES + frame.data.length)
  const v = new DataView(out.buffer)
  out[0] = AUDIO
  v.setUint32(1, frame.seq)
  v.setUint32(5, frame.ts)
  out[9] = frame.level
  out.set(frame.data, VOICE_HEADER_BYTES)
  return out
}

export function encodeWant (on: boolean): Uint8Array { return Uint8Array.of(WANT, on ? 1 : 0) }

export function encodeTalking (level: number): Uint8Array { return Uint8Array.of(TALKING, Math.max(0, Math.min(255, Math.round(level)))) }

/** Decodes a binary frame of a voice stream; `maxPayload` bounds an AUDIO payload, `maxVideo` a VIDEO chunk's (VoiceFrameTooLargeError past them). */
export function decodeVoiceFrame (bytes: Uint8Array, maxPayload = MAX_VOICE_PAYLOAD_BYTES + VOICE_CIPHER_OVERHEAD_BYTES, maxVideo = MAX_VIDEO_CHUNK_BYTES + VOICE_CIPHER_OVERHEAD_BYTES): VoiceFrame {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidVoiceFrameError('an empty voice frame')
  switch (bytes[0]) {
    case AUDIO: {
      if (bytes.length <= VOICE_HEADER_BYTES) throw new InvalidVoiceFrameError('an AUDIO frame with no payload')
      const payload = bytes.subarray(VOICE_HEADER_BYTES)
      if (payload.length > maxPayload) throw new VoiceFrameTooLargeError(`payload of ${payload.length} bytes, over ${maxPayload}`)
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      return { type: 'audio', seq: v.getUint32(1), ts: v.getUint32(5), level: bytes[9], payload }
    }
    case WANT:
      if (bytes.length !== 2 || bytes[1] > 1) throw new InvalidVoiceFrameError('a WANT frame is [0x02][0|1]')
      return { type: 'want', on: bytes[1] === 1 }
    case TALKING:
      if (bytes.length !== 2) throw new InvalidVoiceFrameError('a TALKING frame is [0x03][level]')
      return { type: 'talking', level: bytes[1] }
    case SHARE: {
      if (bytes.length !== SHARE_FRAME_BYTES || bytes[1] > 1) throw new InvalidVoiceFrameError('a SHARE frame is [0x04][0|1][x][y][z]')
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      const position: Vec3 = [v.getFloat32(2), v.getFloat32(6), v.getFloat32(10)]
      if (!position.every(Number.isFinite)) throw new InvalidVoiceFrameError('a board position must be finite')
      return { type: 'share', on: bytes[1] === 1, position }
    }
    case WANT_VIDEO:
      if (bytes.length !== 2 || bytes[1] > 1) throw new InvalidVoiceFrameError('a WANT_VIDEO frame is [0x05][0|1]')
      return { type: 'want-video', on: bytes[1] === 1 }
    case VIDEO: {
      if (bytes.length <= VIDEO_HEADER_BYTES) throw new InvalidVoiceFrameError('a VIDEO chunk with no payload')
      const payload = bytes.subarray(VIDEO_HEADER_BYTES)
      if (payload.length > maxVideo) throw new VoiceFrameTooLargeError(`video chunk of ${payload.length} bytes, over ${maxVideo}`)
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      const index = bytes[10]
      const count = bytes[11]
      if (bytes[9] > 1 || count === 0 || count > MAX_VIDEO_CHUNKS_PER_FRAME || index >= count) throw new InvalidVoiceFrameError('a VIDEO chunk needs flags 0|1 and index < count <= MAX_VIDEO_CHUNKS_PER_FRAME')
      return { type: 'video', seq: v.getUint32(1), ts: v.getUint32(5), key: bytes[9] === 1, index, count, payload }
    }
    case KEYFRAME:
      if (bytes.length !== 1) throw new InvalidVoiceFrameError('a KEYFRAME frame is [0x07]')
      return { type: 'keyframe' }
    default:
      throw new InvalidVoiceFrameError(`unknown voice frame type ${bytes[0]}`)
  }
}

/** A client's frame (its microphone's Opus packet); InvalidVoiceFrameError or VoiceFrameTooLargeError. */
export function decodeClientFrame (bytes: Uint8Array): AudioFrame {
  if (bytes.length > MAX_VOICE_CLIENT_MESSAGE_BYTES) throw new VoiceFrameTooLargeError(`message of ${bytes.length} bytes, over ${MAX_VOICE_CLIENT_MESSAGE_BYTES}`)
  const f = decodeVoiceFrame(bytes, MAX_VOICE_PAYLOAD_BYTES)
  if (f.type !== 'audio') throw new InvalidVoiceFrameError('a client sends only AUDIO frames')
  return { seq: f.seq, ts: f.ts, level: f.level, data: f.payload }
}

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

/** A heard speaker's frame for the client: [0x01][didLen][did][seq][ts][level][opus]. */
export function encodeClientFrame (did: string, frame: AudioFrame): Uint8Array {
  const d = enc.encode(did)
  if (d.length > MAX_VOICE_DID_BYTES) throw new InvalidVoiceFrameError(`did over ${MAX_VOICE_DID_BYTES} bytes`)
  const out = new Uint8Array(2 + d.length + 9 + frame.data.length)
  const v = new DataView(out.buffer)
  out[0] = AUDIO
  out[1] = d.length
  out.set(d, 2)
  let o = 2 + d.length
  v.setUint32(o, frame.seq); o += 4
  v.setUint32(o, frame.ts); o += 4
  out[o++] = frame.level
  out.set(frame.data, o)
  return out
}

/** Decodes a peer-to-client frame (for clients and tests). */
export function decodeClientFrameFromPeer (bytes: Uint8Array): AudioFrame & { did: string } {
  if (bytes.length < 2 || bytes[0] !== AUDIO) throw new InvalidVoiceFrameError('not a voice frame')
  const n = bytes[1]
  if (bytes.length < 2 + n + 9) throw new InvalidVoiceFrameError('a voice frame cut short')
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let o = 2 + n
  const did = dec.decode(bytes.subarray(2, o))
  const seq = v.getUint32(o); o += 4
  const ts = v.getUint32(o); o += 4
  const level = bytes[o++]
  return { did, seq, ts, level, data: bytes.subarray(o) }
}

/** A stream's opening: the space and the sender's signed peer binding. */
export function encodeOpen (space: string, binding: Uint8Array): Uint8Array {
  return dagCbor.encode({ space, binding })
}

export function decodeOpen (bytes: Uint8Array): { space: string, binding: Uint8Array } {
  let open: { space?: unknown, binding?: unknown } | null
  try {
    open = dagCbor.decode(bytes)
  } catch {
    throw new InvalidVoiceOpenError('a voice stream must open with DAG-CBOR { space, binding }')
  }
  if (open == null || typeof open !== 'object' || typeof open.space !== 'string' || !(open.binding instanceof Uint8Array)) {
    throw new InvalidVoiceOpenError('a voice stream must open with { space, binding }')
  }
  return { space: open.space, binding: open.binding }
}

/** The associated data sealed with an audio payload in a private space. */
export function audioAad (space: string, did: string, seq: number): Uint8Array {
  return enc.encode(`${space}|${did}|${seq}`)
}

/** A SHARE note: our board at `position`, or (on false) no board. */
export function encodeShare (on: boolean, position: Vec3): Uint8Array {
  const out = new Uint8Array(SHARE_FRAME_BYTES)
  const v = new DataView(out.buffer)
  out[0] = SHARE
  out[1] = on ? 1 : 0
  v.setFloat32(2, position[0]); v.setFloat32(6, position[1]); v.setFloat32(10, position[2])
  return out
}

export function encodeWantVideo (on: boolean): Uint8Array { return Uint8Array.of(WANT_VIDEO, on ? 1 : 0) }

/** Checks a video chunk of our own; InvalidVoiceFrameError or VoiceFrameTooLargeError. */
export function checkVideo (c: VideoChunk): void {
  if (c == null || typeof c !== 'object') throw new InvalidVoiceFrameError('a video chunk must be { seq, ts, key, index, count, data }')
  if (!isU32(c.seq) || !isU32(c.ts)) throw new InvalidVoiceFrameError('seq and ts must be u32')
  if (typeof c.key !== 'boolean') throw new InvalidVoiceFrameError('key must be a boolean')
  if (!isU8(c.count) || c.count === 0 || c.count > MAX_VIDEO_CHUNKS_PER_FRAME || !isU8(c.index) || c.index >= c.count) throw new InvalidVoiceFrameError('index < count <= MAX_VIDEO_CHUNKS_PER_FRAME')
  if (!(c.data instanceof Uint8Array) || c.data.length === 0) throw new InvalidVoiceFrameError('data must be non-empty bytes')
  if (c.data.length > MAX_VIDEO_CHUNK_BYTES) throw new VoiceFrameTooLargeError(`video chunk of ${c.data.length} bytes, over ${MAX_VIDEO_CHUNK_BYTES}`)
}

/** A VIDEO chunk (peer to peer, and client to peer). */
export function encodeVideo (c: VideoChunk): Uint8Array {
  const out = new Uint8Array(VIDEO_HEADER_BYTES + c.data.length)
  const v = new DataView(out.buffer)
  out[0] = VIDEO
  v.setUint32(1, c.seq)
  v.setUint32(5, c.ts)
  out[9] = c.key ? 1 : 0
  out[10] = c.index
  out[11] = c.count
  out.set(c.data, VIDEO_HEADER_BYTES)
  return out
}

/** The associated data sealed with a video chunk in a private space. */
export function videoAad (space: string, did: string, seq: number, index: number): Uint8Array {
  return enc.encode(`${space}|${did}|v${seq}|${index}`)
}

export const encodeKeyframe = (): Uint8Array => Uint8Array.of(KEYFRAME)

/** A frame of a video socket's client: SHARE, VIDEO or KEYFRAME with a did (InvalidVoiceFrameError otherwise, VoiceFrameTooLargeError past the limits). */
export function decodeVideoClientFrame (bytes: Uint8Array): { type: 'share', on: boolean, position: Vec3 } | { type: 'video', chunk: VideoChunk } | { type: 'keyframe', did: string } {
  if (bytes.length > MAX_VOICE_CLIENT_MESSAGE_BYTES) throw new VoiceFrameTooLargeError(`message of ${bytes.length} bytes, over ${MAX_VOICE_CLIENT_MESSAGE_BYTES}`)
  if (bytes[0] === KEYFRAME) {
    if (bytes.length < 3 || bytes.length !== 2 + bytes[1]) throw new InvalidVoiceFrameError('a client\'s KEYFRAME is [0x07][didLen][did]')
    try {
      return { type: 'keyframe', did: dec.decode(bytes.subarray(2)) }
    } catch {
      throw new InvalidVoiceFrameError('a KEYFRAME did is not UTF-8')
    }
  }
  const f = decodeVoiceFrame(bytes, MAX_VOICE_PAYLOAD_BYTES, MAX_VIDEO_CHUNK_BYTES)
  if (f.type === 'share') return f
  if (f.type === 'video') return { type: 'video', chunk: { seq: f.seq, ts: f.ts, key: f.key, index: f.index, count: f.count, data: f.payload } }
  throw new InvalidVoiceFrameError('a video client sends only SHARE and VIDEO frames')
}

/** A peer-wire frame (SHARE or VIDEO, already opened) of member `did`, for a video client: [type][didLen][did][the rest]. */
export function encodeForClient (did: string, frame: Uint8Array): Uint8Array {
  const d = enc.encode(did)
  if (d.length > MAX_VOICE_DID_BYTES) throw new InvalidVoiceFrameError(`did over ${MAX_VOICE_DID_BYTES} bytes`)
  const out = new Uint8Array(2 + d.length + frame.length - 1)
  out[0] = frame[0]
  out[1] = d.length
  out.set(d, 2)
  out.set(frame.subarray(1), 2 + d.length)
  return out
}

/** Splits a video client frame from the peer into the member's did and its peer-wire frame (for clients and tests). */
export function decodeForClient (bytes: Uint8Array): { did: string, frame: VoiceFrame } {
  if (bytes.length < 2) throw new InvalidVoiceFrameError('a video client frame cut short')
  const n = bytes[1]
  if (bytes.length < 2 + n + 1) throw new InvalidVoiceFrameError('a video client frame cut short')
  const did = dec.decode(bytes.subarray(2, 2 + n))
  const frame = new Uint8Array(bytes.length - 1 - n)
  frame[0] = bytes[0]
  frame.set(bytes.subarray(2 + n), 1)
  return { did, frame: decodeVoiceFrame(frame, MAX_VOICE_PAYLOAD_BYTES, MAX_VIDEO_CHUNK_BYTES) }
}
