/**
 * Length-prefixed frames over a libp2p stream: the one place our protocols read and write them.
 * Every read is bounded twice: the varint prefix may be no longer than the largest allowed frame
 * needs (a prefix that never ends is refused at its first superfluous byte, not after megabytes),
 * and the frame no larger than `maxFrameBytes`. Errors are named so the peer that caused them can
 * be scored: InvalidDataLengthLengthError, InvalidDataLengthError, UnexpectedEOFError.
 */
import type { Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'

/** A length prefix longer than the largest allowed frame needs. */
export class InvalidDataLengthLengthError extends Error {
  name = 'InvalidDataLengthLengthError'
}

/** A frame larger than the protocol allows. */
export class InvalidDataLengthError extends Error {
  name = 'InvalidDataLengthError'
}

/** The stream ended inside a frame. */
export class UnexpectedEOFError extends Error {
  name = 'UnexpectedEOFError'
}

/** The longest a varint prefix may be: 10 bytes encode any 64-bit length. */
export const MAX_VARINT_BYTES = 10

/** Bytes of the unsigned varint encoding of `n`. */
export function varintLength (n: number): number {
  let len = 1
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) len++
  return Math.min(len, MAX_VARINT_BYTES)
}

/** The unsigned varint encoding of `n`. */
export function encodeVarint (n: number): Uint8Array {
  const out: number[] = []
  let v = n
  while (v >= 0x80) { out.push((v % 0x80) | 0x80); v = Math.floor(v / 0x80) }
  out.push(v)
  return Uint8Array.from(out)
}

export interface FramedOptions {
  /** Largest frame read from the peer. */
  maxFrameBytes: number
}

export interface SignalOptions {
  signal?: AbortSignal
}

export interface Framed {
  readonly stream: Stream
  /** The next frame, or null when the peer closed its side between frames. */
  read: (options?: SignalOptions) => Promise<Uint8Array | null>
  /** Frames until the peer closes its side. */
  frames: (options?: SignalOptions) => AsyncGenerator<Uint8Array>
  write: (frame: Uint8Array, options?: SignalOptions) => Promise<void>
  /** Several frames in one socket write. */
  writeMany: (frames: Uint8Array[], options?: SignalOptions) => Promise<void>
}

/** Wraps a stream for length-prefixed frames of at most `maxFrameBytes`. */
export function framed (stream: Stream, options: FramedOptions): Framed {
  const max = options.maxFrameBytes
  if (!Number.isSafeInteger(max) || max < 0) throw new RangeError('maxFrameBytes must be a non-negative integer')
  const maxPrefix = varintLength(max)
  const bytes = byteStream(stream)

  const read = async (opts: SignalOptions = {}): Promise<Uint8Array | null> => {
    let length = 0
    let scale = 1
    for (let i = 0; ; i++) {
      if (i >= maxPrefix) throw new InvalidDataLengthLengthError(`length prefix longer than ${maxPrefix} bytes`)
      let chunk
      try {
        chunk = await bytes.read({ bytes: 1, signal: opts.signal })
      } catch (err) {
        if ((err as Error).name !== 'UnexpectedEOFError') throw err
        chunk = null
      }
      if (chunk == null) {
        // Closed between frames: the clean end of the stream.
        if (i === 0) return null
        throw new UnexpectedEOFError('stream ended inside a length prefix')
      }
      const b = chunk.get(0)
      length += (b & 0x7f) * scale
      scale *= 0x80
      if (b < 0x80) break
    }
    if (length > max) throw new InvalidDataLengthError(`frame of ${length} bytes, over ${max}`)
    if (length === 0) return new Uint8Array(0)
    let body
    try {
      body = await bytes.read({ bytes: length, signal: opts.signal })
    } catch (err) {
      if ((err as Error).name === 'UnexpectedEOFError') throw new UnexpectedEOFError(`stream ended inside a frame of ${length} bytes`)
      throw err
    }
    if (body == null || body.byteLength !== length) throw new UnexpectedEOFError(`stream ended inside a frame of ${length} bytes`)
    return body.subarray()
  }

  return {
    stream,
    read,
    async * frames (opts: SignalOptions = {}) {
      while (true) {
        const frame = await read(opts)
        if (frame == null) return
        yield frame
      }
    },
    // Prefix and frame go out as a list, as lpStream sent them: a large frame is not copied.
    async write (frame, opts = {}) {
      await bytes.write(new Uint8ArrayList(encodeVarint(frame.byteLength), frame), opts)
    },
    async writeMany (frames, opts = {}) {
      if (frames.length === 0) return
      await bytes.write(new Uint8ArrayList(...frames.flatMap(f => [encodeVarint(f.byteLength), f])), opts)
    }
  }
}
