/**
 * Real peers in the test's own process, on 127.0.0.1: full nodes (each with a temp data dir and a
 * log of every 'peer:rejected' it emits) and bare libp2p networks that speak our protocols by
 * hand, the way a hostile or buggy peer would. `stop()` ends them all and removes the dirs.
 * Also `waiter`, the poll-until-true used with them, and `exchange`, one raw request and its answer.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { createNetwork, type Network } from '../../src/net/network.ts'
import { createNode, type PeerverseNode, type RejectedEvent } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig, type PartialConfig } from '../../src/node/config.ts'

/** Polls `cond` every `intervalMs` until it holds, calling `trigger` between looks; fails the test after `timeoutMs`. */
export type Eventually = (what: string, cond: () => Promise<boolean> | boolean, options?: { trigger?: () => Promise<unknown>, timeoutMs?: number }) => Promise<void>

/** An `eventually` with these defaults. */
export function waiter (defaults: { timeoutMs: number, intervalMs: number }): Eventually {
  return async (what, cond, options = {}) => {
    const timeoutMs = options.timeoutMs ?? defaults.timeoutMs
    const deadline = Date.now() + timeoutMs
    while (true) {
      if (await cond()) return
      if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`)
      if (options.trigger != null) await options.trigger().catch(() => {})
      await new Promise(resolve => setTimeout(resolve, defaults.intervalMs))
    }
  }
}

/** The nodes and bare networks one test file starts. */
export class LocalPeers {
  /** Temp dirs are named `peerverse-<name>-…`. */
  readonly name: string
  readonly nodes: PeerverseNode[] = []
  readonly nets: Network[] = []
  readonly dirs: string[] = []
  /** Every 'peer:rejected' each node emitted, in order. */
  readonly rejections = new Map<PeerverseNode, RejectedEvent[]>()

  constructor (name: string) {
    this.name = name
  }

  /** A started node on 127.0.0.1 (TCP, DHT server, no API, no relay server, no mDNS, a devnet of its own; `config` over that) whose rejections are logged. */
  async startNode (config: PartialConfig = {}): Promise<PeerverseNode> {
    const dir = await mkdtemp(join(tmpdir(), `peerverse-${this.name}-`))
    this.dirs.push(dir)
    const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false }, ledger: { devnet: true } }, config))
    this.nodes.push(node)
    const log: RejectedEvent[] = []
    this.rejections.set(node, log)
    node.addEventListener('peer:rejected', evt => { log.push(evt.detail) })
    await node.start()
    return node
  }

  /** A started bare network with a fresh key (DHT client, no relay server), listening on `listen`. */
  async newPeer (listen: string[] = []): Promise<Network> {
    const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen, relayServer: false, dhtMode: 'client' })
    this.nets.push(net)
    await net.start()
    return net
  }

  /** Stops every node and network and removes the dirs; errors are ignored. */
  async stop (): Promise<void> {
    await Promise.all(this.nodes.map(async node => { await node.stop().catch(() => {}) }))
    await Promise.all(this.nets.map(async n => { try { await n.stop() } catch {} }))
    await Promise.all(this.dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  }
}

/** What a server said to one raw request. */
export interface Answer {
  /** The frames the server sent. */
  frames: Uint8Array[]
  /** How the exchange ended: 'eof' for a clean close, else the error's name. */
  end: string
}

/**
 * One raw request on an open `stream`: `send` writes it, then every length-prefixed answer frame
 * (up to `maxDataLength` bytes) is read until the server closes or resets the stream.
 */
export async function exchange (stream: Stream, maxDataLength: number, signal: AbortSignal, send: (lp: LengthPrefixedStream<Stream>) => Promise<void>): Promise<Answer> {
  const lp = lpStream(stream, { maxDataLength })
  const frames: Uint8Array[] = []
  try {
    await send(lp)
    while (true) frames.push((await lp.read({ signal })).subarray())
  } catch (err) {
    const name = (err as Error).name
    if (name === 'UnexpectedEOFError') {
      await stream.close({ signal }).catch(() => { stream.abort(new Error('close failed')) })
      return { frames, end: 'eof' }
    }
    stream.abort(err as Error)
    return { frames, end: name }
  }
}
