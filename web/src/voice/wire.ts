/**
 * The voice WebSocket's binary messages, as the peer's local API defines them. The client sends
 * its microphone's frames as `[0x01][seq u32 BE][ts u32 BE][level u8][opus]`; the peer sends the
 * frames of each heard speaker as `[0x01][didLen u8][did utf8][seq u32 BE][ts u32 BE][level u8][opus]`
 * (already decrypted). Anything else from the peer is ignored.
 */

/** The AUDIO message type, first byte of both directions. */
export const VOICE_AUDIO = 0x01
/** Header of our own frame: type, seq, ts, level. */
export const OWN_HEADER_BYTES = 10
/** The peer closes the socket on a client message larger than this. */
export const MAX_CLIENT_MESSAGE_BYTES = 2048
/** Largest Opus packet we send (the peer drops larger payloads). */
export const MAX_VOICE_PAYLOAD_BYTES = 400

export interface OwnFrame { seq: number, ts: number, level: number, data: Uint8Array }
export interface HeardFrame extends OwnFrame { did: string }

export class VoiceWireError extends Error { name = 'VoiceWireError' }

/** Our microphone's frame as the socket carries it. */
export function encodeOwnFrame (f: OwnFrame): Uint8Array<ArrayBuffer> {
  if (f.data.length > MAX_VOICE_PAYLOAD_BYTES) throw new VoiceWireError(`an Opus packet of ${f.data.length} bytes is over ${MAX_VOICE_PAYLOAD_BYTES}`)
  const out = new Uint8Array(OWN_HEADER_BYTES + f.data.length)
  const dv = new DataView(out.buffer)
  out[0] = VOICE_AUDIO
  dv.setUint32(1, f.seq >>> 0)
  dv.setUint32(5, f.ts >>> 0)
  out[9] = Math.max(0, Math.min(255, Math.round(f.level)))
  out.set(f.data, OWN_HEADER_BYTES)
  return out
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** A heard speaker's frame from the peer; a VoiceWireError for anything malformed. */
export function decodeHeardFrame (buf: ArrayBuffer): HeardFrame | VoiceWireError {
  const b = new Uint8Array(buf)
  if (b.length < 2 || b[0] !== VOICE_AUDIO) return new VoiceWireError('not an audio message')
  const didLen = b[1]
  const at = 2 + didLen
  if (didLen === 0 || b.length < at + 9) return new VoiceWireError('audio message too short')
  let did: string
  try { did = utf8.decode(b.subarray(2, at)) } catch { return new VoiceWireError('speaker did is not utf-8') }
  const dv = new DataView(buf)
  return { did, seq: dv.getUint32(at), ts: dv.getUint32(at + 4), level: b[at + 8], data: b.subarray(at + 9) }
}

/** a - b for u32 sequence numbers and clocks that wrap: negative when a is before b. */
export function seqDiff (a: number, b: number): number {
  return (a - b) | 0
}
