/**
 * WAV files for Chromium's fake microphone (`--use-file-for-fake-audio-capture=FILE.wav`, which
 * plays the file in a loop): 48 kHz mono 16-bit PCM, either a pure tone (each page of a voice
 * test speaks its own frequency, found again in a listener's spectrum) or periodic clicks (a
 * latency benchmark times each click from the capture to the listener).
 */
import { writeFile } from 'node:fs/promises'

export const WAV_SAMPLE_RATE = 48_000

/** A 16-bit mono WAV file of these samples (each -1..1, clipped). */
export function wavBytes (samples: Float32Array, sampleRate = WAV_SAMPLE_RATE): Buffer {
  const data = Buffer.alloc(samples.length * 2)
  for (let i = 0; i < samples.length; i++) data.writeInt16LE(Math.round(Math.max(-1, Math.min(1, samples[i])) * 32767), i * 2)
  const h = Buffer.alloc(44)
  h.write('RIFF', 0, 'ascii')
  h.writeUInt32LE(36 + data.length, 4)
  h.write('WAVE', 8, 'ascii')
  h.write('fmt ', 12, 'ascii')
  h.writeUInt32LE(16, 16)
  h.writeUInt16LE(1, 20) // PCM
  h.writeUInt16LE(1, 22) // mono
  h.writeUInt32LE(sampleRate, 24)
  h.writeUInt32LE(sampleRate * 2, 28)
  h.writeUInt16LE(2, 32)
  h.writeUInt16LE(16, 34)
  h.write('data', 36, 'ascii')
  h.writeUInt32LE(data.length, 40)
  return Buffer.concat([h, data])
}

/**
 * A pure tone of `hz` for `seconds` (rounded to whole cycles, so the file loops without a click),
 * at `amplitude` (0-1).
 */
export function toneSamples (hz: number, seconds: number, amplitude = 0.5): Float32Array {
  if (!(hz > 0 && hz < WAV_SAMPLE_RATE / 2)) throw new RangeError(`tone of ${hz} Hz is outside 0..${WAV_SAMPLE_RATE / 2}`)
  const cycles = Math.max(1, Math.round(hz * seconds))
  const n = Math.round(cycles * WAV_SAMPLE_RATE / hz)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = amplitude * Math.sin(2 * Math.PI * hz * i / WAV_SAMPLE_RATE)
  return out
}

/**
 * Clicks every `periodS` seconds for `seconds`: each a short burst (`clickMs`, a 2 kHz tone under
 * a Hann window) on silence. The click starts exactly at k * periodS, which a benchmark matches.
 */
export function clickSamples (periodS: number, seconds: number, options: { clickMs?: number, amplitude?: number, hz?: number } = {}): Float32Array {
  const clickMs = options.clickMs ?? 5
  const amplitude = options.amplitude ?? 0.8
  const hz = options.hz ?? 2000
  if (!(periodS * 1000 > clickMs)) throw new RangeError(`a click of ${clickMs} ms does not fit in a period of ${periodS} s`)
  const n = Math.round(seconds * WAV_SAMPLE_RATE)
  const out = new Float32Array(n)
  const len = Math.round(clickMs / 1000 * WAV_SAMPLE_RATE)
  for (let at = 0; at < n; at = Math.round(at + periodS * WAV_SAMPLE_RATE)) {
    for (let i = 0; i < len && at + i < n; i++) {
      const w = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / (len - 1))
      out[at + i] = amplitude * w * Math.sin(2 * Math.PI * hz * i / WAV_SAMPLE_RATE)
    }
  }
  return out
}

/** Writes a tone WAV file; returns its path. */
export async function writeToneWav (path: string, hz: number, seconds: number, amplitude?: number): Promise<string> {
  await writeFile(path, wavBytes(toneSamples(hz, seconds, amplitude)))
  return path
}

/** Writes a click-track WAV file; returns its path. */
export async function writeClicksWav (path: string, periodS: number, seconds: number, options?: { clickMs?: number, amplitude?: number, hz?: number }): Promise<string> {
  await writeFile(path, wavBytes(clickSamples(periodS, seconds, options)))
  return path
}
