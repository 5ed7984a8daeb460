/**
 * Node-only: the API's voice: GET /api/v0/voice?space=ID (what voice is doing there), POST
 * /api/v0/voice/mute { space, did, muted } (a personal voice mute), and the voice WebSocket
 * /api/v0/voice/ws?space=ID, which carries binary frames only: the client's microphone frames in
 * ([0x01][seq][ts][level][opus]; anything else, or over MAX_VOICE_CLIENT_MESSAGE_BYTES, closes it
 * with 1008) and every frame of a heard speaker out ([0x01][didLen][did][seq][ts][level][opus]),
 * dropped rather than queued for a client that falls MAX_VOICE_CLIENT_BUFFER_BYTES behind. While
 * a voice socket is open for a space the peer listens there; when the peer leaves that space the
 * socket is closed with VOICE_CLOSE_LEFT_SPACE ('left the space'). A video socket (?media=video) carries
 * boards and their video instead (share.ts).
 */
import type { WebSocket } from 'ws'
import type { PeerverseNode } from '../../node/node.ts'
import { decodeClientFrame, encodeClientFrame, MAX_VOICE_CLIENT_MESSAGE_BYTES, type VoiceFrameEvent } from '../../voice/index.ts'
import { ApiError } from '../errors.ts'
import { serveVideoSocket } from './share.ts'
import { str, type Route } from '../routes.ts'

/** Voice WebSockets open at once. */
export const MAX_VOICE_CLIENTS = 8
/** Bytes queued for a voice client past which its frames are dropped. */
export const MAX_VOICE_CLIENT_BUFFER_BYTES = 64 * 1024
export const VOICE_SOCKET_PATH = '/api/v0/voice/ws'
/**
 * Largest message the voice WebSocket server takes at all (its maxPayload): a client's frame is at
 * most MAX_VOICE_CLIENT_MESSAGE_BYTES, so anything larger is closed by the server (1009) before it
 * is read whole. The event stream's larger bound does not apply here.
 */
export const MAX_VOICE_WS_PAYLOAD_BYTES = MAX_VOICE_CLIENT_MESSAGE_BYTES
/** The close code and reason of a voice or video socket whose space the peer left: the client does not reconnect to it. */
export const VOICE_CLOSE_LEFT_SPACE = 4001
export const VOICE_CLOSE_LEFT_SPACE_REASON = 'left the space'
/** A WebSocket close reason is at most 123 bytes (RFC 6455: 125 with the code). */
export const MAX_CLOSE_REASON_BYTES = 123

/** `text` cut to MAX_CLOSE_REASON_BYTES of UTF-8, at a character boundary. */
export function closeReason (text: string): string {
  const bytes = Buffer.from(text, 'utf8')
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return text
  let out = ''
  let n = 0
  for (const ch of text) {
    n += Buffer.byteLength(ch, 'utf8')
    if (n > MAX_CLOSE_REASON_BYTES) break
    out += ch
  }
  return out
}

/** Closes `ws` with VOICE_CLOSE_LEFT_SPACE once the peer leaves `space`; returns the unsubscribe. */
export function closeOnLeave (node: PeerverseNode, ws: WebSocket, space: string): () => void {
  const onLeft = (evt: CustomEvent<{ space: string }>): void => {
    if (evt.detail.space === space && ws.readyState === ws.OPEN) ws.close(VOICE_CLOSE_LEFT_SPACE, VOICE_CLOSE_LEFT_SPACE_REASON)
  }
  node.voice.addEventListener('voice:left', onLeft)
  return () => { node.voice.removeEventListener('voice:left', onLeft) }
}

/** The `space` query parameter. */
function spaceParam (url: URL): string {
  const space = url.searchParams.get('space')
  if (space == null || space === '') throw new ApiError(400, 'BadRequest', 'space must be given')
  return space
}

export const voiceRoutes: Route[] = [
  { method: 'GET', path: '/api/v0/voice', handle: ({ node, url }) => node.voice.state(spaceParam(url)) },
  {
    method: 'POST',
    path: '/api/v0/voice/mute',
    handle: async ({ node, body }) => {
      const b = await body()
      const space = str(b, 'space')
      if (typeof b.muted !== 'boolean') throw new ApiError(400, 'BadRequest', 'muted must be true or false')
      const did = str(b, 'did')
      node.voice.state(space) // NotJoinedError (404) for a space we are not in
      await node.voice.setVoiceMuted(space, did, b.muted)
      return node.voice.state(space)
    }
  }
]

/** Checks a voice socket's upgrade: a space we are in, room for another client; ApiError otherwise. */
export function checkVoiceUpgrade (node: PeerverseNode, url: URL, clients: number): string {
  const space = spaceParam(url)
  if (!node.space.isJoined(space)) throw new ApiError(404, 'NotJoined', `not in space ${space}`)
  if (clients >= MAX_VOICE_CLIENTS) throw new ApiError(503, 'TooManyClients', 'too many voice clients')
  return space
}

/** Serves one voice socket for `space` until it closes (a video socket, see share.ts, for ?media=video). */
export function serveVoiceSocket (node: PeerverseNode, ws: WebSocket, space: string, media?: string | null): void {
  if (media === 'video') { serveVideoSocket(node, ws, space); return }
  const onFrame = (evt: CustomEvent<VoiceFrameEvent>): void => {
    const f = evt.detail
    if (f.space !== space || ws.readyState !== ws.OPEN || ws.bufferedAmount > MAX_VOICE_CLIENT_BUFFER_BYTES) return
    ws.send(encodeClientFrame(f.did, f), { binary: true })
  }
  node.voice.addEventListener('voice:frame', onFrame)
  const unleave = closeOnLeave(node, ws, space)
  let listening = false
  try {
    node.voice.listen(space)
    listening = true
  } catch (err) {
    ws.close(1011, closeReason((err as Error).message))
  }
  ws.on('message', (data, isBinary) => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    if (!isBinary) { ws.close(1008, 'voice frames are binary'); return }
    if (bytes.length > MAX_VOICE_CLIENT_MESSAGE_BYTES) { ws.close(1008, `message over ${MAX_VOICE_CLIENT_MESSAGE_BYTES} bytes`); return }
    let frame
    try {
      frame = decodeClientFrame(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    } catch (err) {
      ws.close(1008, closeReason(`${(err as Error).name}: ${(err as Error).message}`))
      return
    }
    // Our own frame out; one the peer will not send now (rate, left the space, muted by the owner) is dropped.
    try { node.voice.send(space, frame) } catch {}
  })
  ws.on('close', () => {
    node.voice.removeEventListener('voice:frame', onFrame)
    unleave()
    if (listening) { listening = false; try { node.voice.unlisten(space) } catch {} }
  })
  ws.on('error', () => { ws.terminate() })
}
