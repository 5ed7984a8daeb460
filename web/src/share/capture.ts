/**
 * Our shared stream: the screen (getDisplayMedia) or the camera (getUserMedia video), read frame by
 * frame with MediaStreamTrackProcessor, thinned to VIDEO_MAX_FPS, scaled to fit VIDEO_MAX_WIDTH x
 * VIDEO_MAX_HEIGHT, encoded to VP8 with WebCodecs' VideoEncoder at VIDEO_MAX_BITRATE in real-time
 * mode (a keyframe every KEYFRAME_EVERY frames, and after one we could not send), and cut into
 * chunks of MAX_VIDEO_CHUNK_BYTES for the peer.
 */
import { KEYFRAME_EVERY, MAX_VIDEO_CHUNK_BYTES, MAX_VIDEO_FRAME_BYTES, VIDEO_MAX_BITRATE, VIDEO_MAX_FPS, VIDEO_MAX_HEIGHT, VIDEO_MAX_WIDTH, type Chunk } from './wire.ts'

export type ShareSource = 'screen' | 'camera'

/** Frames the encoder may hold before we skip frames. */
export const MAX_ENCODE_QUEUE = 2

interface TrackProcessor { readable: ReadableStream<VideoFrame> }
type TrackProcessorCtor = new (init: { track: MediaStreamTrack }) => TrackProcessor

/** Our stream's size: the source's, scaled down to fit the bound, in even pixels. */
export function fit (w: number, h: number): { width: number, height: number } {
  const k = Math.min(1, VIDEO_MAX_WIDTH / w, VIDEO_MAX_HEIGHT / h)
  return { width: Math.max(2, Math.floor(w * k / 2) * 2), height: Math.max(2, Math.floor(h * k / 2) * 2) }
}

export class Capture {
  readonly source: ShareSource
  /** Frames encoded, frames skipped (rate or a busy encoder), frames too large to send. */
  readonly counts = { encoded: 0, skipped: 0, oversize: 0 }
  private readonly onChunk: (c: Chunk) => boolean
  private readonly onEnd: () => void
  private track?: MediaStreamTrack
  private encoder?: VideoEncoder
  private reader?: ReadableStreamDefaultReader<VideoFrame>
  private stopped = false
  private seq = 0
  private forceKey = true

  /** The next frame is encoded as a keyframe (a viewer asked for one). */
  requestKey (): void { this.forceKey = true }

  /** `onChunk` sends a chunk (false when it could not); `onEnd` is told when the source ends by itself. */
  constructor (source: ShareSource, onChunk: (c: Chunk) => boolean, onEnd: () => void) {
    this.source = source
    this.onChunk = onChunk
    this.onEnd = onEnd
  }

  async start (): Promise<void> {
    const Processor = (globalThis as { MediaStreamTrackProcessor?: TrackProcessorCtor }).MediaStreamTrackProcessor
    if (Processor == null || typeof VideoEncoder === 'undefined') throw new Error('this browser cannot encode video (WebCodecs)')
    const video = { width: { ideal: VIDEO_MAX_WIDTH }, height: { ideal: VIDEO_MAX_HEIGHT }, frameRate: { ideal: VIDEO_MAX_FPS } }
    const stream = this.source === 'screen'
      ? await navigator.mediaDevices.getDisplayMedia({ video, audio: false })
      : await navigator.mediaDevices.getUserMedia({ video, audio: false })
    const track = stream.getVideoTracks()[0]
    if (track == null) throw new Error('no video track')
    if (this.stopped) { track.stop(); return }
    this.track = track
    track.addEventListener('ended', () => { if (!this.stopped) { this.stop(); this.onEnd() } })
    this.reader = new Processor({ track }).readable.getReader()
    void this.pump()
  }

  private async pump (): Promise<void> {
    let lastUs = -Infinity
    let size: { width: number, height: number } | undefined
    const reader = this.reader as ReadableStreamDefaultReader<VideoFrame>
    while (!this.stopped) {
      const { value: frame, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }))
      if (done || frame == null) break
      try {
        if (frame.timestamp - lastUs < 1e6 / VIDEO_MAX_FPS * 0.9 || (this.encoder?.encodeQueueSize ?? 0) > MAX_ENCODE_QUEUE) { this.counts.skipped++; continue }
        lastUs = frame.timestamp
        const want = fit(frame.displayWidth, frame.displayHeight)
        if (size == null || size.width !== want.width || size.height !== want.height) {
          size = want
          this.configure(size)
        }
        const enc = this.encoder
        if (enc == null || enc.state !== 'configured') continue
        const key = this.forceKey || this.counts.encoded % KEYFRAME_EVERY === 0
        this.forceKey = false
        if (frame.displayWidth === size.width && frame.displayHeight === size.height) enc.encode(frame, { keyFrame: key })
        else {
          const scaled = scale(frame, size)
          try { enc.encode(scaled, { keyFrame: key }) } finally { scaled.close() }
        }
        this.counts.encoded++
      } finally {
        frame.close()
      }
    }
  }

  private configure (size: { width: number, height: number }): void {
    if (this.encoder != null && this.encoder.state !== 'closed') this.encoder.close()
    this.encoder = new VideoEncoder({
      output: chunk => { this.send(chunk) },
      error: () => { this.forceKey = true }
    })
    this.encoder.configure({ codec: 'vp8', ...size, bitrate: VIDEO_MAX_BITRATE, framerate: VIDEO_MAX_FPS, latencyMode: 'realtime' })
    this.forceKey = true
  }

  /** Cuts an encoded frame into chunks; one we cannot send whole makes the next frame a keyframe. */
  private send (chunk: EncodedVideoChunk): void {
    if (chunk.byteLength > MAX_VIDEO_FRAME_BYTES) { this.counts.oversize++; this.forceKey = true; return }
    const data = new Uint8Array(chunk.byteLength)
    chunk.copyTo(data)
    const seq = ++this.seq
    const count = Math.max(1, Math.ceil(data.length / MAX_VIDEO_CHUNK_BYTES))
    const ts = Math.round(chunk.timestamp / 1000) >>> 0
    for (let index = 0; index < count; index++) {
      const ok = this.onChunk({ seq, ts, key: chunk.type === 'key', index, count, data: data.subarray(index * MAX_VIDEO_CHUNK_BYTES, (index + 1) * MAX_VIDEO_CHUNK_BYTES) })
      if (!ok) { this.forceKey = true; return }
    }
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    this.track?.stop()
    void this.reader?.cancel().catch(() => {})
    if (this.encoder != null && this.encoder.state !== 'closed') this.encoder.close()
  }
}

/** A frame scaled to `size` (through a canvas). */
function scale (frame: VideoFrame, size: { width: number, height: number }): VideoFrame {
  const canvas = new OffscreenCanvas(size.width, size.height)
  canvas.getContext('2d')?.drawImage(frame, 0, 0, size.width, size.height)
  return new VideoFrame(canvas, { timestamp: frame.timestamp })
}
