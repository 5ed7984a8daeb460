/**
 * Anchor for the content benchmark: stock Helia moving one file between two nodes over bitswap.
 *
 * Both nodes live in this process, each with its own in-memory blockstore and datastore, and
 * talk over loopback TCP with Noise and Yamux at their default settings (identify is the only
 * libp2p service: bitswap learns a peer speaks its protocol from identify). No bootstrap, mDNS,
 * DHT, delegated routing or HTTP gateways: node B dials node A explicitly and bitswap sends its
 * wantlist to the one connected peer.
 *
 * The file is imported on A with the same chunking Peerverse uses (IPIP-499 profile
 * `unixfs-v1-2025`: CIDv1, raw leaves, 1 MiB fixed-size chunks, balanced layout with up to 1024
 * children per node). The clock runs from the start of `@helia/unixfs` `cat` on B until its
 * last byte has been read; node start-up, import and the dial are outside it.
 *
 * Run directly (`node bench/anchor-helia.ts [MiB]`) it moves 64 MiB (or the given size) of
 * seeded pseudo-random bytes and prints one line.
 */
import { createHash } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs, type AddFileOptions } from '@helia/unixfs'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { IdentifyResult } from '@libp2p/interface'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import type { Multiaddr } from '@multiformats/multiaddr'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight } from 'helia'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { CID } from 'multiformats/cid'
import { seededBytes } from './lib.ts'

const MiB = 1024 * 1024
const LISTEN = '/ip4/127.0.0.1/tcp/0'
/** How long B may take to identify A (and so learn that A speaks bitswap) after the dial. */
const IDENTIFY_TIMEOUT_MS = 10_000

async function createNode () {
  const helia = withBitswap(withLibp2pLight(createHeliaLight({
    blockstore: new MemoryBlockstore(),
    datastore: new MemoryDatastore()
  }), {
    // a key up front, so Helia does not create and store one through its keychain
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: [LISTEN], announce: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  }))
  await helia.start()
  return helia
}

/** Moves `bytes` (a file) from one Helia node to another over bitswap on loopback TCP (Noise + Yamux), both in this process; returns MiB/s of the fetch (time from the start of the fetch on the second node until its last byte has been read via @helia/unixfs cat), plus the root CID. */
export async function heliaBitswapFetch (bytes: Uint8Array, options?: { chunkSize?: number }): Promise<{ mibPerSecond: number, seconds: number, cid: string }> {
  const addOptions: AddFileOptions = { profile: 'unixfs-v1-2025' }
  // the profile still sets CIDv1, raw leaves and 1024 children per node; only the chunker changes
  if (options?.chunkSize != null) addOptions.chunker = fixedSize({ chunkSize: options.chunkSize })

  const a = await createNode()
  let b: Awaited<ReturnType<typeof createNode>> | undefined
  try {
    b = await createNode()
    const root = await unixfs(a).addBytes(bytes, addOptions)

    const addrs = a.libp2p.getMultiaddrs()
    const stray = [...addrs, ...b.libp2p.getMultiaddrs()].filter(ma => !ma.toString().startsWith('/ip4/127.0.0.1/'))
    if (stray.length > 0) throw new Error(`unexpected listen addresses: ${stray.join(' ')}`)

    // dial B -> A and wait until B has identified A, so the clock starts on a ready connection
    const nodeB = b
    const identified = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('B did not identify A in time')) }, IDENTIFY_TIMEOUT_MS).unref()
      const onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
        if (!evt.detail.peerId.equals(a.libp2p.peerId)) return
        clearTimeout(timer)
        nodeB.libp2p.removeEventListener('peer:identify', onIdentify)
        resolve()
      }
      nodeB.libp2p.addEventListener('peer:identify', onIdentify)
    })
    await Promise.all([b.libp2p.dial(addrs), identified])

    const fs = unixfs(b)
    const chunks: Uint8Array[] = []
    let received = 0
    const started = performance.now()
    for await (const chunk of fs.cat(root)) {
      chunks.push(chunk)
      received += chunk.byteLength
    }
    const seconds = (performance.now() - started) / 1000

    if (received !== bytes.byteLength) throw new Error(`fetched ${received} bytes, expected ${bytes.byteLength}`)
    let offset = 0
    for (const chunk of chunks) {
      if (Buffer.compare(chunk, bytes.subarray(offset, offset + chunk.byteLength)) !== 0) {
        throw new Error(`fetched bytes differ from the original near offset ${offset}`)
      }
      offset += chunk.byteLength
    }

    return { mibPerSecond: bytes.byteLength / MiB / seconds, seconds, cid: root.toString() }
  } finally {
    await Promise.all([a.stop(), b?.stop()])
  }
}

/**
 * A fresh Helia node fetches `cid` over bitswap from the peer at `addrs` (any Bitswap server: a
 * Peerverse peer, in bench/content.ts) and checks the bytes against `bytes`; returns MiB/s of the
 * fetch, timed as heliaBitswapFetch times it (from the start of `cat` to its last byte, once the
 * Helia node has identified the server).
 */
export async function heliaFetchFrom (addrs: Multiaddr[], peerId: string, cid: string, bytes: Uint8Array): Promise<{ mibPerSecond: number, seconds: number }> {
  const b = await createNode()
  try {
    const identified = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('the Helia node did not identify the server in time')) }, IDENTIFY_TIMEOUT_MS).unref()
      const onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
        if (evt.detail.peerId.toString() !== peerId) return
        clearTimeout(timer)
        b.libp2p.removeEventListener('peer:identify', onIdentify)
        resolve()
      }
      b.libp2p.addEventListener('peer:identify', onIdentify)
    })
    await Promise.all([b.libp2p.dial(addrs), identified])
    const hash = createHash('sha256')
    let received = 0
    const started = performance.now()
    for await (const chunk of unixfs(b).cat(CID.parse(cid))) {
      hash.update(chunk)
      received += chunk.byteLength
    }
    const seconds = (performance.now() - started) / 1000
    if (received !== bytes.byteLength) throw new Error(`fetched ${received} bytes, expected ${bytes.byteLength}`)
    if (hash.digest('hex') !== createHash('sha256').update(bytes).digest('hex')) throw new Error('fetched bytes differ from the original')
    return { mibPerSecond: bytes.byteLength / MiB / seconds, seconds }
  } finally {
    await b.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// run directly

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const mib = Number(process.argv[2] ?? 64)
  if (!Number.isInteger(mib) || mib <= 0) throw new Error(`size in MiB must be a positive integer, got ${process.argv[2]}`)
  const result = await heliaBitswapFetch(seededBytes(mib * MiB, 1))
  console.log(`helia bitswap ${mib} MiB: ${result.mibPerSecond.toFixed(1)} MiB/s`)
}
