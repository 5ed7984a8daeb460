/**
 * One request/response exchange for our length-prefixed protocols: the asker sends one request
 * frame and reads answer frames until the server closes; the server reads one request within a
 * deadline, answers, and closes. Bounds, deadlines and the verdict on a misbehaving peer live here
 * rather than at every call site.
 */
import type { Stream } from '@libp2p/interface'
import { PROTOCOL_TIMEOUT_MS } from './limits.ts'
import { framed, type Framed } from './framed.ts'
import type { ProtocolPort, RejectSink, RemotePeer } from './ports.ts'

/** Errors that say the peer broke the protocol's framing (as opposed to going away). */
export const FRAMING_ERRORS = new Set(['InvalidDataLengthError', 'InvalidDataLengthLengthError'])


export interface RequestOptions {
  /** Largest answer frame accepted. */
  maxFrameBytes: number
  signal?: AbortSignal
  /** Deadline for the whole exchange (default twice PROTOCOL_TIMEOUT_MS). */
  timeoutMs?: number
  runOnLimitedConnection?: boolean
  addresses?: string[]
}

/**
 * Sends `req` to `peer` on `protocol` and passes each answer frame to `onFrame` until the server
 * closes its side or `onFrame` returns false. Errors (and a timeout) abort the stream and throw.
 */
export async function request (
  protocols: Pick<ProtocolPort, 'dial'>,
  peer: string,
  protocol: string,
  req: Uint8Array,
  onFrame: (frame: Uint8Array) => boolean | Promise<boolean>,
  options: RequestOptions
): Promise<void> {
  const signal = deadline(options.timeoutMs ?? PROTOCOL_TIMEOUT_MS * 2, options.signal)
  const stream = await protocols.dial(peer, protocol, { signal, runOnLimitedConnection: options.runOnLimitedConnection, addresses: options.addresses })
  const f = framed(stream, { maxFrameBytes: options.maxFrameBytes })
  try {
    await f.write(req, { signal })
    for await (const frame of f.frames({ signal })) {
      if (!await onFrame(frame)) break
    }
    await stream.close({ signal }).catch(() => { stream.abort(new Error('closing failed')) })
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

export interface ServeOptions {
  protocol: string
  /** Largest request frame accepted. */
  maxRequestBytes: number
  /** Deadline for the whole exchange (default twice PROTOCOL_TIMEOUT_MS). */
  timeoutMs?: number
  /** Where violations go. */
  onRejected?: RejectSink
  /** Whether an error the answer threw is the peer's fault (framing errors always are). */
  isViolation?: (err: Error) => boolean
}

export interface Exchange {
  remote: RemotePeer
  signal: AbortSignal
  /** The answer side of the stream. */
  out: Framed
}

/**
 * A stream handler that reads one request frame and calls `answer` with it; the stream is closed
 * after, or aborted on any error, and a violation is reported to `onRejected`.
 */
export function serve (
  options: ServeOptions,
  answer: (req: Uint8Array, exchange: Exchange) => Promise<void>
): (stream: Stream, remote: RemotePeer) => void {
  return (stream, remote) => {
    void (async () => {
      const signal = AbortSignal.timeout(options.timeoutMs ?? PROTOCOL_TIMEOUT_MS * 2)
      const f = framed(stream, { maxFrameBytes: options.maxRequestBytes })
      try {
        const req = await f.read({ signal })
        if (req == null) throw new EmptyRequestError('the stream closed before a request')
        await answer(req, { remote, signal, out: f })
        await stream.close({ signal })
      } catch (err) {
        stream.abort(err as Error)
        const e = err as Error
        if (FRAMING_ERRORS.has(e.name) || options.isViolation?.(e) === true) options.onRejected?.(remote.peer, options.protocol, e)
      }
    })()
  }
}

/** The asker closed its side without sending a request. */
export class EmptyRequestError extends Error {
  name = 'EmptyRequestError'
}

/** A signal that fires after `ms` or when `outer` does. */
export function deadline (ms: number, outer?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms)
  return outer == null ? timeout : AbortSignal.any([outer, timeout])
}
