/**
 * Node-only: the video socket, `/api/v0/voice/ws?space=ID&media=video&token=T` (the voice socket's
 * path and checks, binary frames only). While it is open the peer watches boards in that space:
 * it sends the client every board note of the members there ([0x04][didLen][did][on][x][y][z],
 * the current boards first) and each chunk of the board it views ([0x06][didLen][did][seq][ts]
 * [flags][index][count][vp8]), dropped rather than queued for a client that falls
 * MAX_VIDEO_CLIENT_BUFFER_BYTES behind. The client sends SHARE ([0x04][on][x][y][z]) to show or
 * take down its board and VIDEO chunks ([0x06][seq][ts][flags][index][count][vp8]) while it
 * shares, and KEYFRAME ([0x07][didLen][did]) to ask the board of that member it views for a
 * keyframe; the peer sends [0x07] to a sharing client when a viewer asks for one. Anything else,
 * or over MAX_VOICE_CLIENT_MESSAGE_BYTES, closes it with 1008. Closing it takes down a board it
 * showed; the peer leaving the space closes it with VOICE_CLOSE_LEFT_SPACE.
 */
import type { WebSocket } from 'ws'
import type { PeerverseNode } from '../../node/node.ts'
import {
  decodeVideoClientFrame, encodeForClient, encodeKeyframe, encodeShare, encodeVideo, MAX_VOICE_CLIENT_MESSAGE_BYTES, type BoardEvent, type Vec3, type VideoEvent
} from '../../voice/index.ts'
import { closeOnLeave, closeReason } from './voice.ts'

/** Bytes queued for a video client past which its chunks are dropped (a few keyframes). */
export const MAX_VIDEO_CLIENT_BUFFER_BYTES = 512 * 1024

/** Serves one video socket for `space` until it closes. */
export function serveVideoSocket (node: PeerverseNode, ws: WebSocket, space: string): void {
  const send = (bytes: Uint8Array): void => { if (ws.readyState === ws.OPEN) ws.send(bytes, { binary: true }) }
  const onBoard = (evt: CustomEvent<BoardEvent>): void => {
    const b = evt.detail
    if (b.space === space) send(encodeForClient(b.did, encodeShare(b.on, b.position)))
  }
  const onVideo = (evt: CustomEvent<VideoEvent>): void => {
    const v = evt.detail
    if (v.space !== space || ws.bufferedAmount > MAX_VIDEO_CLIENT_BUFFER_BYTES) return
    send(encodeForClient(v.did, encodeVideo(v.chunk)))
  }
  const onKeyframe = (evt: CustomEvent<{ space: string }>): void => { if (evt.detail.space === space && shared != null) send(encodeKeyframe()) }
  node.voice.addEventListener('voice:board', onBoard)
  node.voice.addEventListener('voice:video', onVideo)
  node.voice.addEventListener('voice:keyframe', onKeyframe)
  const unleave = closeOnLeave(node, ws, space)
  let watching = false
  let shared: Vec3 | undefined
  try {
    node.voice.watch(space)
    watching = true
    for (const b of node.voice.boards(space).boards) send(encodeForClient(b.did, encodeShare(true, b.position)))
  } catch (err) {
    ws.close(1011, closeReason((err as Error).message))
  }
  ws.on('message', (data, isBinary) => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    if (!isBinary) { ws.close(1008, 'video frames are binary'); return }
    if (bytes.length > MAX_VOICE_CLIENT_MESSAGE_BYTES) { ws.close(1008, `message over ${MAX_VOICE_CLIENT_MESSAGE_BYTES} bytes`); return }
    let frame
    try {
      frame = decodeVideoClientFrame(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    } catch (err) {
      ws.close(1008, closeReason(`${(err as Error).name}: ${(err as Error).message}`))
      return
    }
    // What the peer will not send now (rate, not sharing, left the space, muted by the owner) is dropped.
    try {
      if (frame.type === 'share') {
        node.voice.share(space, frame.on, frame.position)
        shared = frame.on ? frame.position : undefined
      } else if (frame.type === 'keyframe') {
        node.voice.requestKeyframe(space, frame.did)
      } else {
        node.voice.sendVideo(space, frame.chunk)
      }
    } catch {}
  })
  ws.on('close', () => {
    node.voice.removeEventListener('voice:board', onBoard)
    node.voice.removeEventListener('voice:video', onVideo)
    node.voice.removeEventListener('voice:keyframe', onKeyframe)
    unleave()
    if (shared != null) { try { node.voice.share(space, false, shared) } catch {} }
    if (watching) { watching = false; try { node.voice.unwatch(space) } catch {} }
  })
  ws.on('error', () => { ws.terminate() })
}
