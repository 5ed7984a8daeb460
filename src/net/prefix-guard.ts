/**
 * A stream middleware that bounds the length prefixes of a length-prefixed protocol we do not read
 * ourselves (kad-dht, identify). Their reader takes a varint one byte at a time and, while it has
 * not ended, keeps reading, so a peer could send megabytes of 0x80 and hold the event loop for
 * seconds. The guard follows the frames as bytes arrive and resets the stream at the first
 * prefix byte past what the protocol's largest frame needs. Our own protocols read through
 * framed.ts, which bounds the prefix itself.
 */
import type { Stream, StreamMiddleware } from '@libp2p/interface'
import { InvalidDataLengthLengthError, varintLength } from './framed.ts'

/** Bytes in several buffers, read by index (a Uint8ArrayList). */
export interface ByteList {
  byteLength: number
  get: (index: number) => number
}

/**
 * Follows the length-prefixed frames of one direction of a stream, the first `maxFrames` of them
 * (a relay's hop and stop streams carry one framed message each way, then the relayed bytes).
 */
export class PrefixTracker {
  private readonly maxPrefix: number
  private framesLeft: number
  private prefixBytes = 0
  /** The length read so far of a prefix that has not ended. */
  private length = 0
  /** Bytes left of the current frame's body. */
  private remaining = 0

  constructor (maxFrameBytes: number, maxFrames = Infinity) {
    this.maxPrefix = varintLength(maxFrameBytes)
    this.framesLeft = maxFrames
  }

  /** Whether the frames it follows are over (the rest of the stream is not framed). */
  get done (): boolean {
    return this.framesLeft === 0 && this.remaining === 0
  }

  /**
   * Takes the next bytes (a Uint8ArrayList is read in place, not copied); throws
   * InvalidDataLengthLengthError on a prefix that runs too long.
   */
  feed (data: Uint8Array | ByteList): void {
    const length = data.byteLength
    const at = data instanceof Uint8Array ? (i: number) => data[i] : (i: number) => data.get(i)
    let i = 0
    while (i < length && !this.done) {
      if (this.remaining > 0) {
        const skip = Math.min(this.remaining, length - i)
        this.remaining -= skip
        i += skip
        continue
      }
      const b = at(i++)
      this.length += (b & 0x7f) * 0x80 ** this.prefixBytes
      this.prefixBytes++
      if (b < 0x80) {
        // The prefix ended: skip the frame it announced.
        this.remaining = this.length
        this.length = 0
        this.prefixBytes = 0
        this.framesLeft--
      } else if (this.prefixBytes >= this.maxPrefix) {
        throw new InvalidDataLengthLengthError(`length prefix longer than ${this.maxPrefix} bytes`)
      }
    }
  }
}

type Listener = EventListenerOrEventListenerObject | null

/**
 * Bounds the length prefixes read on every stream of the protocol it is installed for (its first
 * `maxFrames` frames). The protocol's handler (or dialler) gets a view of the stream whose
 * 'message' listeners see each chunk only after the guard has followed it; the stream object
 * itself is left as it is (changing a stream instance's shape made every stream of the process
 * slower).
 */
export function prefixGuard (maxFrameBytes: number, maxFrames = Infinity): StreamMiddleware {
  return (stream: Stream, connection, next) => {
    const tracker = new PrefixTracker(maxFrameBytes, maxFrames)
    /** Chunks already followed: every listener gets the same event object. */
    let checked: object | undefined
    const wrapped = new Map<Listener, EventListener>()
    const bound = new Map<string | symbol, (...args: unknown[]) => unknown>()
    const wrap = (listener: Listener): EventListener => {
      let w = wrapped.get(listener)
      if (w == null) {
        w = (evt: Event) => {
          if (checked !== evt && !tracker.done) {
            checked = evt
            try {
              tracker.feed((evt as unknown as { data: Uint8Array | ByteList }).data)
            } catch (err) {
              stream.abort(err as Error)
              return
            }
          }
          if (typeof listener === 'function') listener(evt)
          else listener?.handleEvent(evt)
        }
        wrapped.set(listener, w)
      }
      return w
    }
    const view = new Proxy(stream, {
      get (target, prop) {
        if (prop === 'addEventListener') {
          return (type: string, listener: Listener, options?: unknown) => {
            target.addEventListener(type as 'message', (type === 'message' ? wrap(listener) : listener) as EventListener, options as AddEventListenerOptions)
          }
        }
        if (prop === 'removeEventListener') {
          return (type: string, listener: Listener, options?: unknown) => {
            target.removeEventListener(type as 'message', (type === 'message' ? wrapped.get(listener) ?? listener : listener) as EventListener, options as EventListenerOptions)
          }
        }
        const value = Reflect.get(target, prop, target)
        // Methods run on the stream itself (they use its private fields); own properties such
        // as the logger are handed over as they are.
        if (typeof value !== 'function' || Object.hasOwn(target, prop)) return value
        let b = bound.get(prop)
        if (b == null) {
          b = (value as (...args: unknown[]) => unknown).bind(target)
          bound.set(prop, b)
        }
        return b
      },
      set (target, prop, value) {
        return Reflect.set(target, prop, value, target)
      }
    })
    next(view, connection)
  }
}
