/**
 * Node-only (node:dgram). A small STUN binding responder (RFC 8489): a peer behind NAT learns the
 * address its router gives it (a server-reflexive ICE candidate) by asking a public peer, so WebRTC
 * can punch through both NATs without any third-party STUN server. It answers a binding request
 * with a success response carrying XOR-MAPPED-ADDRESS and nothing else, and drops everything else.
 *
 * A responder answers unauthenticated UDP, so it can be used to reflect traffic at a forged
 * source: every response is no larger than its request plus the one attribute, and each source
 * address gets at most STUN_MAX_RESPONSES_PER_SECOND_PER_HOST answers a second.
 */
import { createSocket, type Socket } from 'node:dgram'
import { isIPv4, isIPv6 } from 'node:net'
import { TokenBuckets } from './rate-limit.ts'

/** The fixed cookie in every STUN header (RFC 8489 §5). */
export const STUN_MAGIC_COOKIE = 0x2112a442
export const STUN_HEADER_BYTES = 20
export const STUN_BINDING_REQUEST = 0x0001
export const STUN_BINDING_SUCCESS = 0x0101
export const STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020
/** Largest request we read: RFC 8489 keeps STUN over UDP under 576-byte datagrams, IP and UDP headers included. */
export const STUN_MAX_REQUEST_BYTES = 548
/** Answers a second to one source IP address (a responder must not become a traffic reflector). */
export const STUN_MAX_RESPONSES_PER_SECOND_PER_HOST = 10
/** Answers one source IP address may get in a burst. */
export const STUN_RESPONSE_BURST_PER_HOST = 20
/** Source addresses whose rate we track at once (older idle ones are dropped). */
export const STUN_MAX_TRACKED_HOSTS = 4096

export class StunMessageError extends Error { override name = 'StunMessageError' }

export interface StunRequest {
  type: number
  transactionId: Uint8Array
}

/** Parses a STUN message header (attributes are checked for framing, not read). Throws StunMessageError. */
export function parseStunMessage (buf: Uint8Array): StunRequest {
  if (buf.byteLength > STUN_MAX_REQUEST_BYTES) throw new StunMessageError(`message of ${buf.byteLength} bytes is over ${STUN_MAX_REQUEST_BYTES}`)
  if (buf.byteLength < STUN_HEADER_BYTES) throw new StunMessageError(`message of ${buf.byteLength} bytes is shorter than a header`)
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const type = view.getUint16(0)
  if ((type & 0xc000) !== 0) throw new StunMessageError('top bits of the message type are set (not STUN)')
  const length = view.getUint16(2)
  if (length !== buf.byteLength - STUN_HEADER_BYTES) throw new StunMessageError(`length field ${length} does not match ${buf.byteLength - STUN_HEADER_BYTES} bytes of attributes`)
  if (length % 4 !== 0) throw new StunMessageError('attributes are not padded to 4 bytes')
  if (view.getUint32(4) !== STUN_MAGIC_COOKIE) throw new StunMessageError('wrong magic cookie')
  let at = STUN_HEADER_BYTES
  while (at < buf.byteLength) {
    if (at + 4 > buf.byteLength) throw new StunMessageError('truncated attribute header')
    const attrLength = view.getUint16(at + 2)
    at += 4 + Math.ceil(attrLength / 4) * 4
    if (at > buf.byteLength) throw new StunMessageError('attribute runs past the message')
  }
  return { type, transactionId: buf.slice(8, 20) }
}

/** A binding success response for `transactionId` telling the asker it was seen at `address`:`port`. */
export function bindingSuccess (transactionId: Uint8Array, address: string, port: number): Uint8Array {
  const v4 = isIPv4(address)
  if (!v4 && !isIPv6(address)) throw new StunMessageError(`not an IP address: ${address}`)
  const addrBytes = v4 ? 4 : 16
  const attrLength = 4 + addrBytes
  const out = new Uint8Array(STUN_HEADER_BYTES + 4 + attrLength)
  const view = new DataView(out.buffer)
  view.setUint16(0, STUN_BINDING_SUCCESS)
  view.setUint16(2, 4 + attrLength)
  view.setUint32(4, STUN_MAGIC_COOKIE)
  out.set(transactionId, 8)
  view.setUint16(20, STUN_ATTR_XOR_MAPPED_ADDRESS)
  view.setUint16(22, attrLength)
  view.setUint8(24, 0)
  view.setUint8(25, v4 ? 0x01 : 0x02)
  view.setUint16(26, port ^ (STUN_MAGIC_COOKIE >>> 16))
  const raw = v4 ? Uint8Array.from(address.split('.').map(Number)) : ipv6Bytes(address)
  const mask = new Uint8Array(16)
  new DataView(mask.buffer).setUint32(0, STUN_MAGIC_COOKIE)
  mask.set(transactionId, 4)
  for (let i = 0; i < addrBytes; i++) out[28 + i] = raw[i] ^ mask[i]
  return out
}

/** Reads XOR-MAPPED-ADDRESS from a binding success response (what a client does; used by tests and `peerverse` diagnostics). */
export function readXorMappedAddress (buf: Uint8Array): { address: string, port: number } {
  const msg = parseStunMessage(buf)
  if (msg.type !== STUN_BINDING_SUCCESS) throw new StunMessageError('not a binding success response')
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  let at = STUN_HEADER_BYTES
  while (at + 4 <= buf.byteLength) {
    const type = view.getUint16(at)
    const length = view.getUint16(at + 2)
    if (type === STUN_ATTR_XOR_MAPPED_ADDRESS) {
      const family = view.getUint8(at + 5)
      const port = view.getUint16(at + 6) ^ (STUN_MAGIC_COOKIE >>> 16)
      const mask = new Uint8Array(16)
      new DataView(mask.buffer).setUint32(0, STUN_MAGIC_COOKIE)
      mask.set(msg.transactionId, 4)
      const n = family === 0x01 ? 4 : 16
      if (length < 4 + n) throw new StunMessageError('short XOR-MAPPED-ADDRESS')
      const raw = Array.from({ length: n }, (_, i) => buf[at + 8 + i] ^ mask[i])
      const address = n === 4
        ? raw.join('.')
        : Array.from({ length: 8 }, (_, i) => ((raw[2 * i] << 8) | raw[2 * i + 1]).toString(16)).join(':')
      return { address, port }
    }
    at += 4 + Math.ceil(length / 4) * 4
  }
  throw new StunMessageError('no XOR-MAPPED-ADDRESS')
}

function ipv6Bytes (address: string): Uint8Array {
  const out = new Uint8Array(16)
  let text = address
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 != null) {
    const [a, b, c, d] = v4[1].split('.').map(Number)
    text = text.slice(0, -v4[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail == null ? [] : (tail === '' ? [] : tail.split(':'))
  const groups = tail == null ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t]
  groups.forEach((g, i) => { out[2 * i] = parseInt(g, 16) >> 8; out[2 * i + 1] = parseInt(g, 16) & 0xff })
  return out
}

export interface StunServerInit {
  /** UDP port (our first TCP listen port, by convention). */
  port: number
  host?: string
  /** Answers a second per source host (default STUN_MAX_RESPONSES_PER_SECOND_PER_HOST; tests only). */
  ratePerHost?: number
  burstPerHost?: number
}

export interface StunStats {
  answered: number
  /** Messages refused with StunMessageError (malformed, oversize). */
  malformed: number
  /** Well-formed messages that were not binding requests. */
  ignored: number
  /** Binding requests dropped by the per-host rate limit. */
  rateLimited: number
}

/** A running binding responder. */
export class StunServer {
  readonly stats: StunStats = { answered: 0, malformed: 0, ignored: 0, rateLimited: 0 }
  private readonly socket: Socket
  private readonly buckets: TokenBuckets

  private constructor (socket: Socket, init: StunServerInit) {
    this.socket = socket
    this.buckets = new TokenBuckets(init.ratePerHost ?? STUN_MAX_RESPONSES_PER_SECOND_PER_HOST, init.burstPerHost ?? STUN_RESPONSE_BURST_PER_HOST, STUN_MAX_TRACKED_HOSTS)
    socket.on('message', (msg, rinfo) => { this.onMessage(msg, rinfo.address, rinfo.port) })
    socket.on('error', () => {})
  }

  static async start (init: StunServerInit): Promise<StunServer> {
    const host = init.host ?? '0.0.0.0'
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(init.port, host, () => { socket.off('error', reject); resolve() })
    })
    return new StunServer(socket, init)
  }

  address (): { address: string, port: number } { return this.socket.address() }

  private onMessage (msg: Buffer, address: string, port: number): void {
    let req: StunRequest
    try {
      req = parseStunMessage(msg)
    } catch (err) {
      if (err instanceof StunMessageError) { this.stats.malformed++; return }
      throw err
    }
    // Port 0 is no reachable source (a forged packet): node:dgram throws on a send to it, from this handler.
    if (req.type !== STUN_BINDING_REQUEST || port === 0) { this.stats.ignored++; return }
    if (!this.buckets.take(address)) { this.stats.rateLimited++; return }
    const mapped = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address
    try {
      // A send error (synchronous for a bad destination, or later in the callback) costs one answer, never the peer.
      this.socket.send(bindingSuccess(req.transactionId, mapped, port), port, address, () => {})
    } catch {
      this.stats.ignored++
      return
    }
    this.stats.answered++
  }

  async stop (): Promise<void> {
    await new Promise<void>(resolve => { this.socket.close(() => { resolve() }) }).catch(() => {})
  }
}
