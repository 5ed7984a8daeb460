/**
 * The microphone: getUserMedia with the browser's echo cancellation, noise suppression and
 * automatic gain, read frame by frame (MediaStreamTrackProcessor) into an Opus AudioEncoder
 * (48 kHz mono, 32 kbps, 20 ms frames, in-band FEC). Each encoded frame gets the next sequence
 * number, our ms clock and its level: the RMS of the samples it was made from, scaled to 0-255.
 * Input that is not 48 kHz mono is mixed down to its first channel and resampled linearly first.
 */
import { MAX_VOICE_PAYLOAD_BYTES, type OwnFrame } from './wire.ts'

export const OPUS_CONFIG: AudioEncoderConfig = {
  codec: 'opus',
  sampleRate: 48_000,
  numberOfChannels: 1,
  bitrate: 32_000,
  opus: { frameDuration: 20_000, useinbandfec: true }
}

export class VoiceUnsupportedError extends Error { name = 'VoiceUnsupportedError' }
export class MicrophoneError extends Error { name = 'MicrophoneError' }

// Chromium exposes it on window; the DOM typings know it only in workers.
interface TrackProcessor { readable: ReadableStream<AudioData> }
declare const MediaStreamTrackProcessor: { new (init: { track: MediaStreamTrack, maxBufferSize?: number }): TrackProcessor } | undefined

/**
 * Microphone chunks (10 ms each in Chromium) held while the page is busy (a long task, a slow
 * frame) before the oldest are dropped: late voice still reaches the encoder in order.
 */
export const CAPTURE_BUFFER_CHUNKS = 50

/** A running capture; stop() releases the device. */
export class Capture {
  private stream: MediaStream | null = null
  private encoder: AudioEncoder | null = null
  private reader: ReadableStreamDefaultReader<AudioData> | null = null
  private stopped = false
  private seq: number
  private sumSq = 0
  private count = 0
  private readonly onFrame: (f: OwnFrame) => void
  private readonly onError: (err: Error) => void

  constructor (firstSeq: number, onFrame: (f: OwnFrame) => void, onError: (err: Error) => void) {
    this.seq = firstSeq >>> 0
    this.onFrame = onFrame
    this.onError = onError
  }

  /** The sequence number the next frame will carry (so a new capture continues it). */
  get nextSeq (): number { return this.seq }

  async start (): Promise<void> {
    if (typeof MediaStreamTrackProcessor === 'undefined' || typeof AudioEncoder === 'undefined') {
      throw new VoiceUnsupportedError('this browser cannot encode voice (it lacks WebCodecs or MediaStreamTrackProcessor)')
    }
    const support = await AudioEncoder.isConfigSupported(OPUS_CONFIG)
    if (support.supported !== true) throw new VoiceUnsupportedError('this browser has no Opus encoder')
    let stream: MediaStream
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1, sampleRate: 48_000 },
        video: false
      })
    } catch (err) {
      throw new MicrophoneError(`no microphone: ${(err as Error).message}`)
    }
    if (this.stopped) { for (const t of stream.getTracks()) t.stop(); return }
    this.stream = stream
    const track = stream.getAudioTracks()[0]
    const encoder = new AudioEncoder({
      output: chunk => { this.encoded(chunk) },
      error: err => { this.fail(new MicrophoneError(`encoder: ${err.message}`)) }
    })
    encoder.configure(OPUS_CONFIG)
    this.encoder = encoder
    this.reader = new MediaStreamTrackProcessor({ track, maxBufferSize: CAPTURE_BUFFER_CHUNKS }).readable.getReader()
    void this.readLoop()
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    void this.reader?.cancel().catch(() => {})
    for (const t of this.stream?.getTracks() ?? []) t.stop()
    const e = this.encoder
    if (e != null && e.state !== 'closed') try { e.close() } catch {}
  }

  private async readLoop (): Promise<void> {
    const reader = this.reader as ReadableStreamDefaultReader<AudioData>
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done || this.stopped) { value?.close(); return }
        this.take(value)
      }
    } catch (err) {
      if (!this.stopped) this.fail(new MicrophoneError(`capture: ${(err as Error).message}`))
    }
  }

  /** One chunk of the microphone: its level is counted, and it goes to the encoder as 48 kHz mono. */
  private take (data: AudioData): void {
    try {
      const n = data.numberOfFrames
      const mono = new Float32Array(n)
      data.copyTo(mono, { planeIndex: 0, format: 'f32-planar' })
      for (const s of mono) this.sumSq += s * s
      this.count += n
      const pcm = data.sampleRate === 48_000 ? mono : resample(mono, data.sampleRate, 48_000)
      const enc = this.encoder
      if (enc == null || enc.state !== 'configured') return
      const frame = new AudioData({ format: 'f32-planar', sampleRate: 48_000, numberOfChannels: 1, numberOfFrames: pcm.length, timestamp: data.timestamp, data: pcm })
      enc.encode(frame)
      frame.close()
    } finally {
      data.close()
    }
  }

  private encoded (chunk: EncodedAudioChunk): void {
    if (this.stopped || chunk.byteLength > MAX_VOICE_PAYLOAD_BYTES) return
    const data = new Uint8Array(chunk.byteLength)
    chunk.copyTo(data)
    const rms = this.count > 0 ? Math.sqrt(this.sumSq / this.count) : 0
    this.sumSq = 0
    this.count = 0
    const seq = this.seq
    this.seq = (this.seq + 1) >>> 0
    this.onFrame({ seq, ts: Math.floor(performance.timeOrigin + performance.now()) >>> 0, level: Math.min(255, Math.round(rms * 255)), data })
  }

  private fail (err: Error): void {
    if (this.stopped) return
    this.stop()
    this.onError(err)
  }
}

/** Linear resampling, enough for speech into a 32 kbps codec. */
function resample (pcm: Float32Array, from: number, to: number): Float32Array<ArrayBuffer> {
  const n = Math.max(1, Math.round(pcm.length * to / from))
  const out = new Float32Array(n)
  const step = from / to
  for (let i = 0; i < n; i++) {
    const x = i * step
    const j = Math.floor(x)
    const f = x - j
    out[i] = (pcm[j] ?? 0) * (1 - f) + (pcm[Math.min(j + 1, pcm.length - 1)] ?? 0) * f
  }
  return out
}
