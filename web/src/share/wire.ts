/**
 * The video socket's binary messages (`/api/v0/voice/ws?space=ID&media=video`), as the peer's local
 * API defines them. The client sends SHARE `[0x04][on u8][x f32 BE][y f32 BE][z f32 BE]` to show or
 * take down its board, and VIDEO chunks `[0x06][seq u32 BE][ts u32 BE][flags u8, 1 = key][index u8]
 * [count u8][vp8]` while it shares; the peer sends each member's board note and the chunks of the
 * board it views with the member's did after the type: `[type][didLen u8][did utf8][the rest]`.
 * KEYFRAME: the client asks the board of a member it views for one, `[0x07][didLen u8][did utf8]`,
 * and a sharing client is asked for one with `[0x07]`.
 */

export const SHARE_MSG = 0x04
export const VIDEO_MSG = 0x06
export const KEYFRAME_MSG = 0x07
/** The peer's limits on chunks and frames, and what we encode at most: one file for both sides. */
export { KEYFRAME_REQUEST_MIN_MS, MAX_VIDEO_CHUNK_BYTES, MAX_VIDEO_FRAME_BYTES, VIDEO_MAX_BITRATE, VIDEO_MAX_FPS, VIDEO_MAX_HEIGHT, VIDEO_MAX_WIDTH } from '../../../src/voice/video-limits.ts'
import { VIDEO_MAX_FPS } from '../../../src/voice/video-limits.ts'
/** A keyframe this often (frames), so a viewer that comes near starts within about two seconds (sooner when its peer asks for one). */
export const KEYFRAME_EVERY = 2 * VIDEO_MAX_FPS

export type Vec3 = [number, number, number]
export interface Chunk { seq: number, ts: number, key: boolean, index: number, count: number, data: Uint8Array }
export type PeerMessage = { type: 'share', did: string, on: boolean, position: Vec3 } | ({ type: 'video', did: string } & Chunk) | { type: 'keyframe' }

export class ShareWireError extends Error { name = 'ShareWireError' }

export function encodeShareMsg (on: boolean, p: Vec3): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(14)
  const v = new DataView(out.buffer)
  out[0] = SHARE_MSG
  out[1] = on ? 1 : 0
  v.setFloat32(2, p[0]); v.setFloat32(6, p[1]); v.setFloat32(10, p[2])
  return out
}

export function encodeVideoMsg (c: Chunk): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(12 + c.data.length)
  const v = new DataView(out.buffer)
  out[0] = VIDEO_MSG
  v.setUint32(1, c.seq >>> 0)
  v.setUint32(5, c.ts >>> 0)
  out[9] = c.key ? 1 : 0
  out[10] = c.index
  out[11] = c.count
  out.set(c.data, 12)
  return out
}

const dec = new TextDecoder()
const enc = new TextEncoder()

/** Asks the board of `did` we view for a keyframe: [0x07][didLen][did]. */
export function encodeKeyframeMsg (did: string): Uint8Array<ArrayBuffer> {
  const d = enc.encode(did)
  if (d.length > 255) throw new ShareWireError('did over 255 bytes')
  const out = new Uint8Array(2 + d.length)
  out[0] = KEYFRAME_MSG
  out[1] = d.length
  out.set(d, 2)
  return out
}

/** A message from the peer; ShareWireError for anything that is not one. */
export function decodePeerMsg (buf: ArrayBuffer): PeerMessage | ShareWireError {
  const b = new Uint8Array(buf)
  // A viewer of our board needs a keyframe.
  if (b.length === 1 && b[0] === KEYFRAME_MSG) return { type: 'keyframe' }
  if (b.length < 2) return new ShareWireError('short')
  const n = b[1]
  const o = 2 + n
  const did = dec.decode(b.subarray(2, o))
  const v = new DataView(buf)
  if (b[0] === SHARE_MSG) {
    if (b.length !== o + 13) return new ShareWireError('a board note of the wrong length')
    return { type: 'share', did, on: b[o] === 1, position: [v.getFloat32(o + 1), v.getFloat32(o + 5), v.getFloat32(o + 9)] }
  }
  if (b[0] === VIDEO_MSG) {
    if (b.length <= o + 11) return new ShareWireError('a video chunk cut short')
    return { type: 'video', did, seq: v.getUint32(o), ts: v.getUint32(o + 4), key: b[o + 8] === 1, index: b[o + 9], count: b[o + 10], data: b.subarray(o + 11) }
  }
  return new ShareWireError(`unknown message ${b[0]}`)
}
