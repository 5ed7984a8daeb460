/**
 * Playing what we hear: one Speaker per heard member. Its Opus frames are decoded as they arrive
 * (AudioDecoder; the chunk's timestamp carries the sequence number back out), held in the
 * adaptive jitter buffer (jitter.ts), and scheduled as AudioBufferSourceNodes at exact times on
 * the AudioContext clock, so consecutive frames join without gaps. The chain per speaker is
 * sources → PannerNode (HRTF, placed at the avatar) → GainNode (range fade, volume, mute) →
 * AnalyserNode (its level) → the master AnalyserNode → the speakers.
 *
 * Loss concealment: a missing frame is replaced by the last decoded frame played again with a
 * fade, each missing frame in a row at half the gain of the one before (1 → 0.5, 0.5 → 0.25, …,
 * linear ramps inside each frame so the gain never jumps), up to MAX_CONCEAL_FRAMES; then silence.
 * Repeating 20 ms of voice sounds far less broken than a hole, and the fade keeps a burst of loss
 * from turning into a buzz.
 */
import { FRAME_S, JitterBuffer, type JitterStats } from './jitter.ts'
import type { HeardFrame } from './wire.ts'

/** Nobody is heard beyond this distance (m); the peer does not even send their audio. */
export const HEARING_RANGE_M = 30
/** Full loudness below this fraction of the range, fading linearly to silence at the range. */
export const RANGE_FADE_FROM = 0.8
/** A speaker counts as receiving while its frames came within this long (ms). */
export const RECEIVING_MS = 500
/** Sample rate of the Opus frames and of our AudioContext. */
export const VOICE_SAMPLE_RATE = 48_000
/** Height of a speaking mouth above an avatar's feet (m). */
export const MOUTH_HEIGHT = 1.5
/** Frames in a decoder at once (0.5 s); more means it stalled, and it is replaced. */
export const MAX_DECODING = 25
/** Volume bounds of the per-person slider. */
export const MAX_VOLUME = 2
/**
 * A speaker with no frame for this long (ms) is let go: its decoder closed, its nodes taken out of
 * the graph. A member heard once and gone quiet (or gone away) costs nothing after it; when they
 * talk again a new Speaker is made for them. Well over a pause in talk (TALKING_HOLD_MS).
 */
export const SPEAKER_IDLE_MS = 10_000

/** Closes and removes the speakers with no frame for SPEAKER_IDLE_MS at `now`; returns their dids. */
export function dropIdleSpeakers (speakers: Map<string, { lastArrival: number, close: () => void }>, now: number): string[] {
  const gone: string[] = []
  for (const [did, s] of speakers) {
    if (now - s.lastArrival < SPEAKER_IDLE_MS) continue
    s.close()
    speakers.delete(did)
    gone.push(did)
  }
  return gone
}

export type Vec3 = [number, number, number]

/** The shared output: every speaker ends in the master analyser, which ends in the speakers. */
export class Output {
  readonly ctx: AudioContext
  readonly master: AnalyserNode

  constructor () {
    this.ctx = new AudioContext({ sampleRate: VOICE_SAMPLE_RATE, latencyHint: 'interactive' })
    this.master = this.ctx.createAnalyser()
    this.master.fftSize = 8192
    // No smoothing across reads: a read says what plays now (the last 170 ms), not what played
    // when it was last read.
    this.master.smoothingTimeConstant = 0
    this.master.connect(this.ctx.destination)
    const l = this.ctx.listener
    if (l.positionX != null) { l.upX.value = 0; l.upY.value = 1; l.upZ.value = 0 }
  }

  /** Puts the listener at our ears, facing along yaw (forward is -z turned by yaw). */
  setListener (ears: Vec3, yaw: number): void {
    const l = this.ctx.listener
    const t = this.ctx.currentTime
    const fx = -Math.sin(yaw)
    const fz = -Math.cos(yaw)
    if (l.positionX != null) {
      l.positionX.setTargetAtTime(ears[0], t, 0.02)
      l.positionY.setTargetAtTime(ears[1], t, 0.02)
      l.positionZ.setTargetAtTime(ears[2], t, 0.02)
      l.forwardX.setTargetAtTime(fx, t, 0.02)
      l.forwardY.setTargetAtTime(0, t, 0.02)
      l.forwardZ.setTargetAtTime(fz, t, 0.02)
    } else {
      l.setPosition(...ears)
      l.setOrientation(fx, 0, fz, 0, 1, 0)
    }
  }

  /** The loudest peaks of what is played now: frequency (Hz) and level (dB), strongest first. */
  peaks (max = 16, floorDb = -100): Array<{ hz: number, db: number }> {
    const bins = new Float32Array(this.master.frequencyBinCount)
    this.master.getFloatFrequencyData(bins)
    const hzPerBin = this.ctx.sampleRate / this.master.fftSize
    const out: Array<{ hz: number, db: number }> = []
    for (let i = 1; i < bins.length - 1; i++) {
      const v = bins[i]
      if (v > floorDb && v >= bins[i - 1] && v > bins[i + 1]) out.push({ hz: Math.round(i * hzPerBin), db: Math.round(v * 10) / 10 })
    }
    return out.sort((a, b) => b.db - a.db).slice(0, max)
  }
}

/** One heard member: decoder, jitter buffer, concealment and its audio chain. */
export class Speaker {
  readonly did: string
  lastArrival = -Infinity
  lastLevel = 0
  private readonly out: Output
  private readonly jb = new JitterBuffer<AudioBuffer>()
  private decoder: AudioDecoder | null = null
  private readonly panner: PannerNode
  private readonly gain: GainNode
  private readonly analyser: AnalyserNode
  private readonly samples: Float32Array<ArrayBuffer>
  private last: AudioBuffer | null = null
  /** Each frame in the decoder, by the index given to it: its seq and the sender's ts. */
  private readonly decoding = new Map<number, { seq: number, ts: number }>()
  private decodeIndex = 0
  private volume = 1
  private muted = false
  private rangeGain = 1
  private closed = false
  private decodeErrors = 0

  constructor (out: Output, did: string) {
    this.out = out
    this.did = did
    this.lastArrival = performance.now()
    const ctx = out.ctx
    this.panner = new PannerNode(ctx, { panningModel: 'HRTF', distanceModel: 'inverse', refDistance: 1.5, rolloffFactor: 1, maxDistance: HEARING_RANGE_M })
    this.gain = ctx.createGain()
    this.analyser = ctx.createAnalyser()
    this.analyser.fftSize = 1024
    this.samples = new Float32Array(this.analyser.fftSize)
    this.panner.connect(this.gain).connect(this.analyser).connect(out.master)
  }

  /** A frame from the voice socket. */
  receive (f: HeardFrame): void {
    if (this.closed) return
    this.lastArrival = performance.now()
    this.lastLevel = f.level
    if (!this.jb.wants(f.seq)) { this.jb.stats.late++; return }
    const dec = this.ensureDecoder()
    if (dec == null) return
    try {
      // Chunks get timestamps of our own, always rising by one frame: a decoder may drop or hold
      // output whose timestamps go back or jump (frames reordered, or resumed after a pause).
      const index = this.decodeIndex++
      this.decoding.set(index, { seq: f.seq, ts: f.ts })
      dec.decode(new EncodedAudioChunk({ type: 'key', timestamp: index * 20_000, data: f.data }))
      // A decoder that takes frames and gives nothing back is replaced.
      if (this.decoding.size >= MAX_DECODING) { this.decodeErrors++; this.dropDecoder() }
    } catch {
      this.decodeErrors++
      this.dropDecoder()
    }
  }

  /** Schedules what is due: called by the pump every few ms and after each decoded frame. */
  pump (): void {
    if (this.closed) return
    const ctx = this.out.ctx
    for (const a of this.jb.pull(ctx.currentTime)) {
      if (a.kind === 'play') {
        this.last = a.item
        this.schedule(a.item, a.at)
      } else if (this.last != null) {
        this.schedule(this.faded(this.last, a.step), a.at)
      }
    }
  }

  /** Places the speaker's mouth and fades it out towards the edge of hearing range. */
  setPosition (feet: Vec3, listener: Vec3): void {
    const p: Vec3 = [feet[0], feet[1] + MOUTH_HEIGHT, feet[2]]
    const t = this.out.ctx.currentTime
    this.panner.positionX.setTargetAtTime(p[0], t, 0.02)
    this.panner.positionY.setTargetAtTime(p[1], t, 0.02)
    this.panner.positionZ.setTargetAtTime(p[2], t, 0.02)
    const d = Math.hypot(p[0] - listener[0], p[1] - listener[1], p[2] - listener[2])
    const from = HEARING_RANGE_M * RANGE_FADE_FROM
    this.rangeGain = d <= from ? 1 : d >= HEARING_RANGE_M ? 0 : (HEARING_RANGE_M - d) / (HEARING_RANGE_M - from)
    this.applyGain()
  }

  setVolume (v: number): void { this.volume = Math.max(0, Math.min(MAX_VOLUME, v)); this.applyGain() }

  /** Silenced at once (already scheduled frames included: the gain is after them). */
  setMuted (m: boolean): void {
    this.muted = m
    this.applyGain(true)
    if (m) this.jb.reset()
  }

  /** What is being played from this member now, 0-1 (RMS of its analyser's window). */
  level (): number {
    this.analyser.getFloatTimeDomainData(this.samples)
    let sum = 0
    for (const s of this.samples) sum += s * s
    return Math.min(1, Math.sqrt(sum / this.samples.length))
  }

  get receiving (): boolean { return performance.now() - this.lastArrival < RECEIVING_MS }

  get stats (): JitterStats { return this.jb.stats }

  /** The decoder's state, with frames in it and errors so far (for the read-only hook). */
  get decoderInfo (): { state: string, decoding: number, errors: number } {
    return { state: this.decoder?.state ?? 'none', decoding: this.decoding.size, errors: this.decodeErrors }
  }

  close (): void {
    this.closed = true
    this.dropDecoder()
    this.jb.reset()
    this.gain.gain.value = 0
    this.panner.disconnect()
    this.gain.disconnect()
    this.analyser.disconnect()
  }

  private applyGain (now = false): void {
    const g = this.muted ? 0 : this.volume * this.rangeGain
    const p = this.gain.gain
    if (now) { p.cancelScheduledValues(0); p.value = g } else p.setTargetAtTime(g, this.out.ctx.currentTime, 0.02)
  }

  private schedule (buf: AudioBuffer, at: number): void {
    const src = this.out.ctx.createBufferSource()
    src.buffer = buf
    src.connect(this.panner)
    src.onended = () => { src.disconnect() }
    src.start(at)
  }

  /** The last frame again, faded: gain from 0.5^(step-1) down to 0.5^step across the frame. */
  private faded (buf: AudioBuffer, step: number): AudioBuffer {
    const out = this.out.ctx.createBuffer(1, buf.length, buf.sampleRate)
    const from = buf.getChannelData(0)
    const to = out.getChannelData(0)
    const g0 = 0.5 ** (step - 1)
    const g1 = 0.5 ** step
    for (let i = 0; i < from.length; i++) to[i] = from[i] * (g0 + (g1 - g0) * i / from.length)
    return out
  }

  private ensureDecoder (): AudioDecoder | null {
    if (this.decoder != null && this.decoder.state !== 'closed') return this.decoder
    try {
      const dec = new AudioDecoder({
        output: data => { this.decoded(data) },
        error: () => { this.decodeErrors++; this.dropDecoder() }
      })
      dec.configure({ codec: 'opus', sampleRate: VOICE_SAMPLE_RATE, numberOfChannels: 1 })
      this.decoder = dec
      return dec
    } catch {
      this.decoder = null
      return null
    }
  }

  private decoded (data: AudioData): void {
    try {
      if (this.closed) return
      const index = Math.round(data.timestamp / 20_000)
      const n = data.numberOfFrames
      const buf = this.out.ctx.createBuffer(1, Math.max(1, n), data.sampleRate)
      const plane = new Float32Array(n)
      data.copyTo(plane, { planeIndex: 0, format: 'f32-planar' })
      buf.copyToChannel(plane, 0)
      const f = this.decoding.get(index)
      if (f === undefined) return
      this.decoding.delete(index)
      this.jb.arrive(f.seq, f.ts, this.out.ctx.currentTime, buf)
      this.pump()
    } catch {
      // A frame we cannot read is left missing: concealment covers it.
    } finally {
      data.close()
    }
  }

  private dropDecoder (): void {
    const d = this.decoder
    this.decoder = null
    this.decoding.clear()
    if (d != null && d.state !== 'closed') try { d.close() } catch {}
  }
}

/** Frame length in ms (for display). */
export const FRAME_MS = FRAME_S * 1000
