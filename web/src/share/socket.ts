/**
 * The video socket of one space: `/api/v0/voice/ws?space=ID&media=video&token=T`, binary both ways
 * (wire.ts). It reconnects as the voice socket does (../socket.ts), and not after the peer closed
 * it for leaving the space.
 * Our chunks are never queued behind a slow socket: past MAX_SEND_BUFFER_BYTES waiting, a chunk is
 * refused (and the capture sends a keyframe next).
 */
import { ReconnectingSocket, voiceSocketUrl } from '../socket.ts'
import { decodePeerMsg, encodeKeyframeMsg, encodeShareMsg, encodeVideoMsg, type Chunk, type PeerMessage, type Vec3 } from './wire.ts'

/** Our chunks are refused while more than this waits to be sent (a couple of keyframes). */
export const MAX_SEND_BUFFER_BYTES = 256 * 1024

export interface ShareSocketHandlers {
  onMessage: (m: PeerMessage) => void
  onOpen: () => void
  onClose: () => void
}

export class ShareSocket {
  readonly space: string
  readonly counts = { sent: 0, refused: 0, received: 0, malformed: 0 }
  private readonly socket: ReconnectingSocket

  constructor (space: string, token: string, handlers: ShareSocketHandlers) {
    this.space = space
    this.socket = new ReconnectingSocket(() => voiceSocketUrl(space, token, 'video'), {
      onOpen: () => { handlers.onOpen() },
      onMessage: data => {
        const m = decodePeerMsg(data)
        if (m instanceof Error) { this.counts.malformed++; return }
        this.counts.received++
        handlers.onMessage(m)
      },
      onClose: () => { handlers.onClose() }
    })
  }

  start (): void { this.socket.start() }

  stop (): void { this.socket.stop() }

  /** Our board's note (shown at `position`, or taken down). */
  send (b: { on: boolean, position: Vec3 }): void {
    this.socket.ws?.send(encodeShareMsg(b.on, b.position))
  }

  /** Asks the board of `did` we view for a keyframe (the peers bound how often it goes out). */
  askKeyframe (did: string): void {
    this.socket.ws?.send(encodeKeyframeMsg(did))
  }

  /** One chunk of our stream; false when it was refused. */
  sendChunk (c: Chunk): boolean {
    const ws = this.socket.ws
    if (ws == null || ws.bufferedAmount > MAX_SEND_BUFFER_BYTES) { this.counts.refused++; return false }
    ws.send(encodeVideoMsg(c))
    this.counts.sent++
    return true
  }
}
