/**
 * One peer of the content benchmark (bench/content.ts), run in its own process so that seeders and
 * the downloader use the machine's cores as real peers on one host would.
 *
 * Started with child_process.fork by bench/content.ts. It builds a Peerverse node on loopback TCP
 * in a fresh temporary data dir, starts it, reports `ready` with its peer id and addresses, then
 * answers IPC requests `{ id, op, ...args }` with `{ id, ok, result | error }`, one at a time in
 * arrival order. File bytes are generated here from a seed, so 256 MiB never crosses IPC, and
 * every time is measured here, around the call it names. On `stop`, or when the parent goes away,
 * it stops the node, deletes its data dir and exits.
 *
 * The bytes come from `seededBytes` (bench/lib.ts), so the parent makes the same bytes for the
 * Helia anchor.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import * as netSocket from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { parseCid } from '../src/content/blockstore.ts'
import { defaultConfig, mergeConfig } from '../src/node/config.ts'
import { createNode, type PeerverseNode } from '../src/node/node.ts'
import { seededBytes } from './lib.ts'

export const SINK_PROTOCOL = '/peerverse/bench/sink/1.0.0'

/** Requests the parent sends, and what each returns. */
export interface PeerOps {
  add: { args: { seed: number, bytes: number }, result: { cid: string, ms: number, blocks: number } }
  connect: { args: { addr: string }, result: { peerId: string } }
  fetch: { args: { cid: string, timeoutMs: number }, result: FetchResult }
  ttfb: { args: { cid: string, offsets: number[], length: number, timeoutMs: number }, result: { ttfbMs: number[], readMs: number[], cpuMs: number } }
  rawResult: { args: Record<string, never>, result: { ms: number, cpuMs: number } }
  rawSend: { args: { peer: string, bytes: number, chunk: number }, result: { ms: number, cpuMs: number } }
  stats: { args: Record<string, never>, result: { socketBytesWritten: number, cpuMs: number, rejected: number } }
  stop: { args: Record<string, never>, result: null }
}

export interface FetchResult {
  ms: number
  cpuMs: number
  fetchedBlocks: number
  blocks: number
  localBlocks: number
  /** Bytes received from peers, and of those the duplicates (end game). */
  received: number
  wasted: number
  peers: number
  /** Wall time inside Blockstore.put during the fetch (summed over overlapping calls), and calls. */
  putMs: number
  puts: number
  /** Peers this downloader rejected (banned) during the fetch. */
  rejected: number
}

export type Request = { [K in keyof PeerOps]: { id: number, op: K } & PeerOps[K]['args'] }[keyof PeerOps]
export type Reply = { id: number, ok: true, result: unknown } | { id: number, ok: false, error: string }
export interface Ready { type: 'ready', peerId: string, addrs: string[] }

// ---------------------------------------------------------------------------------------------
// the child

const cpuMsSince = (start: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(start)
  return (c.user + c.system) / 1000
}

// Every byte handed to a node:net socket (as bench/net.ts counts them): a seeder's share of a fetch.
let socketBytesWritten = 0
function countSocketWrites (): void {
  const socketWrite = netSocket.Socket.prototype.write
  netSocket.Socket.prototype.write = function (this: netSocket.Socket, ...args: unknown[]): boolean {
    const chunk = args[0]
    if (chunk instanceof Uint8Array) socketBytesWritten += chunk.byteLength
    else if (typeof chunk === 'string') socketBytesWritten += Buffer.byteLength(chunk)
    return (socketWrite as (...a: unknown[]) => boolean).apply(this, args)
  } as typeof netSocket.Socket.prototype.write
}

/** Raw transfers received (the sender names the length in an 8-byte header), oldest first, and who waits for the next. */
const rawDone: Array<{ ms: number, cpuMs: number }> = []
let rawWaiter: (() => void) | undefined

async function runChild (name: string): Promise<void> {
  let rejected = 0
  const send = (msg: Reply | Ready): void => { if (process.connected) process.send?.(msg) }
  countSocketWrites()
  let dir: string | undefined
  let node: PeerverseNode | undefined
  let starting = true
  let stopAfterStart = false
  let exiting = false
  const shutdown = async (code: number): Promise<void> => {
    // mid-start the node would go on writing into the dir we delete: stop once it has started
    if (starting) { stopAfterStart = true; return }
    if (exiting) return
    exiting = true
    try { await node?.stop() } catch {}
    if (dir != null) await rm(dir, { recursive: true, force: true }).catch(() => {})
    if (process.connected) process.disconnect()
    process.exit(code)
  }
  // The parent went away (or killed us politely): clean up, no orphans.
  process.on('disconnect', () => { void shutdown(0) })
  process.on('SIGTERM', () => { void shutdown(0) })
  process.on('SIGINT', () => { void shutdown(0) })
  // A parent that died while this module was loading left no 'disconnect' for us to hear.
  if (!process.connected) process.exit(0)

  try {
    dir = await mkdtemp(join(tmpdir(), 'peerverse-bench-content-'))
    node = await createNode(mergeConfig(defaultConfig(dir), {
      discovery: { mdns: false },
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: false,
      dht: { mode: 'server' },
      relay: { server: false }
    }))
    await node.start()
  } catch (err) {
    process.stderr.write(`[${name}] start failed: ${(err as Error).stack ?? String(err)}\n`)
    starting = false
    await shutdown(1)
    return
  }
  starting = false
  if (stopAfterStart) { await shutdown(0); return }
  const n = node

  // Time inside Blockstore.put (bench-only instrumentation of one instance).
  const trace = { putMs: 0, puts: 0 }
  const bs = n.content['blockstore']
  const put = bs.put.bind(bs)
  bs.put = async (...args: Parameters<typeof put>): Promise<void> => {
    const t = performance.now()
    try { await put(...args) } finally { trace.putMs += performance.now() - t; trace.puts++ }
  }

  // The raw sink. The receiver sends one byte once it is reading (bytes that arrive before a
  // stream has a reader pile up in its read buffer, and past 4 MiB libp2p resets the stream); the
  // sender then sends an 8-byte length and that many bytes; one byte goes back when all have arrived.
  await n.net.handle(SINK_PROTOCOL, async (stream) => {
    let expect = -1
    let got = 0
    let header = new Uint8Array(0)
    let t0 = 0
    let cpu = process.cpuUsage()
    const it = stream[Symbol.asyncIterator]()
    let next = it.next()
    stream.send(new Uint8Array([0]))
    for (let r = await next; r.done !== true; r = await next) {
      next = it.next()
      let chunk = r.value.subarray()
      if (expect < 0) {
        if (header.length === 0) { t0 = performance.now(); cpu = process.cpuUsage() }
        const joined = new Uint8Array(header.length + chunk.length)
        joined.set(header)
        joined.set(chunk, header.length)
        if (joined.length < 8) { header = joined; continue }
        expect = Number(new DataView(joined.buffer, joined.byteOffset, 8).getBigUint64(0))
        chunk = joined.subarray(8)
      }
      got += chunk.byteLength
      if (got >= expect) {
        stream.send(new Uint8Array([1]))
        rawDone.push({ ms: performance.now() - t0, cpuMs: cpuMsSince(cpu) })
        rawWaiter?.()
      }
    }
    await stream.close().catch(() => {})
  }, { maxInboundStreams: 4, maxOutboundStreams: 4 })

  n.addEventListener('peer:rejected', (evt) => {
    rejected++
    process.stderr.write(`[${name}] rejected ${evt.detail.peerId.slice(-8)} on ${evt.detail.protocol}: ${evt.detail.error}\n`)
  })

  const ops: { [K in keyof PeerOps]: (args: PeerOps[K]['args']) => Promise<PeerOps[K]['result']> } = {
    async add ({ seed, bytes }) {
      const data = seededBytes(bytes, seed)
      const t0 = performance.now()
      const r = await n.content.add(data)
      return { cid: r.cid.toString(), ms: performance.now() - t0, blocks: r.blocks }
    },

    async connect ({ addr }) {
      return { peerId: await n.connect(addr) }
    },

    async fetch ({ cid, timeoutMs }) {
      const root = parseCid(cid)
      trace.putMs = 0
      trace.puts = 0
      const rejectedBefore = rejected
      const cpu = process.cpuUsage()
      const t0 = performance.now()
      const stat = await n.content.fetch(root, { signal: AbortSignal.timeout(timeoutMs) })
      const ms = performance.now() - t0
      const cpuMs = cpuMsSince(cpu)
      // the download lingers after fetch returns (DOWNLOAD_LINGER_MS), so this is the same one
      const d = n.content['swarm'].download(root)
      return {
        ms,
        cpuMs,
        fetchedBlocks: stat.fetchedBlocks ?? 0,
        blocks: stat.blocks ?? 0,
        localBlocks: stat.localBlocks ?? 0,
        received: d.received,
        wasted: d.wasted,
        peers: d.peerCount,
        putMs: trace.putMs,
        puts: trace.puts,
        rejected: rejected - rejectedBefore
      }
    },

    async ttfb ({ cid, offsets, length, timeoutMs }) {
      const root = parseCid(cid)
      const ttfbMs: number[] = []
      const readMs: number[] = []
      const cpu = process.cpuUsage()
      for (const offset of offsets) {
        let first = -1
        let got = 0
        const t0 = performance.now()
        for await (const chunk of n.content.cat(root, { offset, length, signal: AbortSignal.timeout(timeoutMs) })) {
          if (first < 0) first = performance.now() - t0
          got += chunk.byteLength
        }
        const total = performance.now() - t0
        if (got !== length) throw new Error(`read of ${length} bytes at ${offset} returned ${got}`)
        ttfbMs.push(first)
        readMs.push(total)
      }
      return { ttfbMs, readMs, cpuMs: cpuMsSince(cpu) }
    },

    async rawResult () {
      while (rawDone.length === 0) await new Promise<void>(resolve => { rawWaiter = resolve })
      rawWaiter = undefined
      return rawDone.shift() as { ms: number, cpuMs: number }
    },

    async rawSend ({ peer, bytes, chunk }) {
      const stream = await n.net.dialProtocol(peerIdFromString(peer), SINK_PROTOCOL)
      const replies = stream[Symbol.asyncIterator]()
      const ready = await replies.next()
      if (ready.done === true) throw new Error('sink closed before it was ready')
      const ack = replies.next()
      const data = seededBytes(chunk, 7)
      const header = new Uint8Array(8)
      new DataView(header.buffer).setBigUint64(0, BigInt(bytes))
      const cpu = process.cpuUsage()
      const t0 = performance.now()
      stream.send(header)
      for (let sent = 0; sent < bytes; sent += chunk) {
        if (!stream.send(data)) await stream.onDrain()
      }
      await ack
      const ms = performance.now() - t0
      const cpuMs = cpuMsSince(cpu)
      await stream.close().catch(() => { stream.abort(new Error('closed')) })
      return { ms, cpuMs }
    },

    async stats () {
      return { socketBytesWritten, cpuMs: cpuMsSince({ user: 0, system: 0 }), rejected }
    },

    async stop () {
      return null
    }
  }

  // One request at a time, in order: the parent never overlaps requests to one peer anyway.
  let queue = Promise.resolve()
  process.on('message', (msg: Request) => {
    queue = queue.then(async () => {
      if (exiting) return
      try {
        const result = await (ops[msg.op] as (a: unknown) => Promise<unknown>)(msg)
        send({ id: msg.id, ok: true, result })
      } catch (err) {
        send({ id: msg.id, ok: false, error: (err as Error).stack ?? String(err) })
      }
      if (msg.op === 'stop') await shutdown(0)
    })
  })
  send({ type: 'ready', peerId: n.peerId, addrs: n.addresses() })
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.send == null) {
    process.stderr.write('bench/content-peer.ts is started by bench/content.ts (child_process.fork), not run directly\n')
    process.exit(2)
  }
  await runChild(process.argv[2] ?? 'peer')
}
