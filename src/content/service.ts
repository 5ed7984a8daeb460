/**
 * The content capability: add, read, fetch, pin and collect content-addressed files and
 * directories, over the local block store and the swarm. Reads stream: `cat` yields the first
 * bytes as soon as the blocks under them arrive, fetching in order from the read position;
 * `fetch` gets a whole file or directory rarest-first and then announces it in the DHT.
 * Others see only its methods (status, has, isBanned, add, cat, stat, ls, pins, gc ...): the block
 * store and the swarm stay inside, reached through the ContentComponents it was built with.
 */
import * as dagPb from '@ipld/dag-pb'
import { logger } from '@libp2p/logger'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { TypedEventEmitter } from 'main-event'
import { linkHolders, shareableAddresses, type Link, type LinkHolder } from '../net/links.ts'
import type { ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import { BlockNotFoundError, parseCid, type ContentBlockstore, type DownloadRecord, type PinInfo, type SweepResult } from './blocks.ts'
import { isStoreFailure, UnwantedDownloads, type StoreState } from './download-records.ts'
import { buildDirectory, listDirectory, resolvePath, type DirEntry, type ResolvedPath } from './directory.ts'
import { fileLeaves, readFile, UnsupportedContentError, type GetBlock, type Leaf } from './reader.ts'
import { DIRECT_PATH_TIMEOUT_MS, Swarm, type DirectPath, type Download, type DownloadProgress } from './swarm.ts'
import { Imports } from './imports.ts'
import { importFile, type Block, type ImportResult } from './unixfs.ts'
import { dagBlocks, walkPath, type DagSource, type DagWalkOptions } from './car-dag.ts'
import { importCar, type CarImportResult } from './car-import.ts'
import type { CarReadOptions } from './car.ts'

/** Files and directories one fetch of a directory walks at most. */
export const MAX_FETCH_ENTRIES = 10_000
/** Directory levels one fetch follows at most. */
export const MAX_FETCH_DEPTH = 32
/** Provider announcements in flight at once. */
export const MAX_CONCURRENT_PROVIDES = 4
/** Time one provider announcement may take. */
export const PROVIDE_TIMEOUT_MS = 60_000
/** Times a download that never found a holder is started (by the user, then once per start of the peer) before it is given up. */
export const MAX_UNFOUND_DOWNLOAD_ATTEMPTS = 5
/** Age after which a download that never found a holder is given up on the next start. */
export const MAX_UNFOUND_DOWNLOAD_AGE_MS = 7 * 24 * 3600_000
/** Given-up downloads the status lists (the most recent). */
export const MAX_ABANDONED_LISTED = 16
const log = logger('peerverse:content')

/** A download given up: it never found a holder within its attempts or age. */
export interface AbandonedDownload {
  cid: string
  attempts: number
  since: number
  at: number
  reason: string
}

export interface ContentInit {
  /** Provider announcements in flight at once (default MAX_CONCURRENT_PROVIDES). */
  maxConcurrentProvides?: number
  /** Time one provider announcement may take (default PROVIDE_TIMEOUT_MS). */
  provideTimeoutMs?: number
  /** How long a download looks for a holder before NoProvidersError (default NO_HOLDERS_TIMEOUT_MS). */
  noHoldersTimeoutMs?: number
  /** How long a fetch whose holders are reachable only through relays waits for a direct path (default DIRECT_PATH_TIMEOUT_MS). */
  directPathTimeoutMs?: number
}

export interface ContentComponents {
  /** Our swarm protocol, and the connected peers downloads ask first. */
  protocols: ProtocolPort
  /** Announcing what we hold, and finding holders, in the DHT. */
  routing: RoutingPort
  /** Where peers that broke the swarm protocol or sent bad blocks are reported. */
  onRejected: RejectSink
  /** The block store (blockstore.ts on the Node peer). */
  blockstore: ContentBlockstore
  /** The node's store: record deletions it refused are written when it takes writes again. */
  store?: StoreState
  /** Hole punching, where the node has it: a fetch too large for a relay asks it for a direct path. */
  directPath?: DirectPath
}

/** Content emits no events of its own: bad peers go to the onRejected component. */
export type ContentEvents = Record<never, CustomEvent>

/** Event names content emits (none; see ContentEvents). */
export const CONTENT_EVENTS = [] as const

/** The store and the swarm at a glance (GET /api/v0/status, /api/v0/content/store). */
export interface ContentStatus {
  usedBytes: number
  maxBytes: number
  blocks: number
  blocksServed: number
  bytesServed: number
  blocksFetched: number
  bytesFetched: number
  bytesWasted: number
  /** Downloads given up since start because no holder was ever found (the most recent MAX_ABANDONED_LISTED). */
  abandonedDownloads: AbandonedDownload[]
}

export type ContentSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

export interface CatOptions {
  offset?: number
  length?: number
  signal?: AbortSignal
  /** Providers of this CID hold the content too (a directory the file was found under). */
  hints?: CID[]
  /** Peers a link names as holders (multiaddrs ending in /p2p/<peer id>, at most MAX_LINK_PEERS): asked beside the DHT's providers. */
  peers?: string[]
  onProgress?: (p: { bytes: number }) => void
}

export interface FetchOptions {
  signal?: AbortSignal
  onProgress?: (p: FetchProgress) => void
  /** Peers a link names as holders (multiaddrs ending in /p2p/<peer id>, at most MAX_LINK_PEERS): asked beside the DHT's providers. */
  peers?: string[]
  /** How long to wait for a direct path to holders reachable only through relays (default: the service's setting). */
  directPathTimeoutMs?: number
}

export interface FetchProgress extends DownloadProgress {
  cid: string
  files: number
}

export interface ContentStat {
  cid: string
  kind: 'file' | 'directory'
  /** Bytes of file content (files) or the directory's total tree size. */
  size: number
  /** Leaf blocks held here, of the file's total (files only). */
  localBlocks?: number
  blocks?: number
  pinned: boolean
  /** Blocks this fetch took from peers (fetch only). */
  fetchedBlocks?: number
}

export class ContentService extends TypedEventEmitter<ContentEvents> {
  private readonly blockstore: ContentBlockstore
  private readonly swarm: Swarm
  private readonly routing: RoutingPort
  private readonly maxConcurrentProvides: number
  private readonly provideTimeoutMs: number
  private readonly directPathTimeoutMs: number
  /** Adds and imports in progress: their blocks are kept from gc until their root is pinned. */
  private readonly imports: Imports
  /** Fetches in progress per root (the user's and resumed ones). */
  private readonly fetching = new Map<string, number>()
  private readonly abandoned: AbandonedDownload[] = []
  /** Records of downloads ended for good (aborted, or the store could not keep their blocks). */
  private readonly unwanted: UnwantedDownloads
  private provides = 0
  private readonly provideQueue: CID[] = []
  private started = false

  constructor (init: ContentInit, components: ContentComponents) {
    super()
    this.routing = components.routing
    this.blockstore = components.blockstore
    this.maxConcurrentProvides = init.maxConcurrentProvides ?? MAX_CONCURRENT_PROVIDES
    this.provideTimeoutMs = init.provideTimeoutMs ?? PROVIDE_TIMEOUT_MS
    this.directPathTimeoutMs = init.directPathTimeoutMs ?? DIRECT_PATH_TIMEOUT_MS
    this.swarm = new Swarm(components, { noHoldersTimeoutMs: init.noHoldersTimeoutMs })
    this.unwanted = new UnwantedDownloads(this.blockstore, components.store)
    this.imports = new Imports(this.blockstore, async keep => await this.reachableFrom(keep))
    this.blockstore.onPressure = async () => { await this.gc() }
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.blockstore.repair().catch(err => { log('repair of the block store failed: %s', (err as Error).message) })
    this.unwanted.start()
    await this.swarm.start()
    await this.resumeDownloads()
  }

  /**
   * Downloads interrupted by a stop or a crash go on where they were; one that never found a
   * holder is given up after MAX_UNFOUND_DOWNLOAD_ATTEMPTS starts or MAX_UNFOUND_DOWNLOAD_AGE_MS.
   */
  private async resumeDownloads (): Promise<void> {
    const now = Date.now()
    for (const record of await this.blockstore.downloads()) {
      let cid: CID
      try { cid = parseCid(record.cid) } catch { continue }
      const found = record.found || this.blockstore.has(cid)
      const reason = found
        ? undefined
        : record.attempts >= MAX_UNFOUND_DOWNLOAD_ATTEMPTS
          ? `no holder found in ${record.attempts} attempts`
          : now - record.since > MAX_UNFOUND_DOWNLOAD_AGE_MS ? `no holder found in ${Math.floor((now - record.since) / 3600_000)} h` : undefined
      if (reason != null) {
        log('giving up the download of %s: %s', record.cid, reason)
        await this.blockstore.clearDownload(cid).catch(() => {})
        this.abandoned.push({ cid: record.cid, attempts: record.attempts, since: record.since, at: now, reason })
        if (this.abandoned.length > MAX_ABANDONED_LISTED) this.abandoned.shift()
        continue
      }
      void this.fetch(cid).catch(() => {})
    }
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.swarm.stop()
    await this.unwanted.stop()
  }

  /** The store's use and the swarm's counters since start. */
  status (): ContentStatus {
    return {
      usedBytes: this.blockstore.usedBytes,
      maxBytes: this.blockstore.maxBytes,
      blocks: this.blockstore.blockCount,
      ...this.swarm.stats,
      abandonedDownloads: [...this.abandoned]
    }
  }

  /** Whether a block is held here. */
  has (cid: CID): boolean {
    return this.blockstore.has(cid)
  }

  /** Whether a peer is banned for sending bad blocks or breaking the swarm protocol (the connection gate asks). */
  isBanned (peer: string): boolean {
    return this.swarm.isBanned(peer)
  }

  /** Wantlist entries a Bitswap peer keeps with us (at most BITSWAP_MAX_WANTLIST_ENTRIES). */
  bitswapWantlistSize (peer: string): number {
    return this.swarm.bitswapService.wantlistSize(peer)
  }

  /** A block from the store, else from the swarm (as part of `root`'s download). */
  private getter (root: CID, options: { signal?: AbortSignal, hints?: CID[], used?: Download[], holders?: LinkHolder[] } = {}): { get: GetBlock, download: () => Download } {
    let download: Download | undefined
    const d = (): Download => {
      // A shared download another request halted (it was aborted while this one was between
      // blocks) is closed: take the swarm's current one, or a new one, rather than fail.
      if (download == null || download.closed) {
        download = this.swarm.download(root, options.hints, options.holders)
        options.used?.push(download)
      }
      return download
    }
    const get: GetBlock = async (cid, o) => {
      if (this.blockstore.has(cid)) {
        try { return await this.blockstore.get(cid) } catch (err) { if (!(err instanceof BlockNotFoundError)) throw err }
      }
      return await d().getBlock(cid, { signal: o.signal ?? options.signal })
    }
    return { get, download: d }
  }

  /**
   * Imports a file, stores its blocks durably, pins it (unless pin is false) and announces it.
   * When it fails (DiskFullError on a full disk) the blocks it wrote that nothing else references
   * are removed again. With `importId` the blocks stay part of that import (see endImport).
   */
  async add (source: ContentSource, options: { name?: string, pin?: boolean, signal?: AbortSignal, importId?: string } = {}): Promise<ImportResult> {
    const src = source instanceof Uint8Array ? [source] : source
    return await this.imports.run(options.importId, async put => await this.finishImport(await importFile(src, async block => {
      options.signal?.throwIfAborted()
      await put(block.cid, block.bytes)
      this.swarm.stored(block.cid)
    }), options))
  }

  /** Pins (unless pin is false) and announces the root of an import. */
  private async finishImport<R extends { cid: CID, size: number }> (result: R, options: { name?: string, pin?: boolean }): Promise<R> {
    if (options.pin !== false) await this.blockstore.pin({ cid: result.cid.toString(), size: result.size, name: options.name, pinnedAt: Date.now() })
    this.provide(result.cid)
    return result
  }

  /** Ends an import (see Imports.end): kept, or discarded with the blocks it wrote that nothing else references. */
  async endImport (id: string, options: { discard?: boolean } = {}): Promise<{ removed: number }> {
    return await this.imports.end(id, options)
  }

  /** Builds a directory from children already held here; pins and announces it like add. */
  async addDirectory (children: Array<{ name: string, cid: CID }>, options: { name?: string, pin?: boolean, importId?: string } = {}): Promise<{ cid: CID, size: number }> {
    const entries: DirEntry[] = []
    for (const c of children) entries.push({ name: c.name, cid: c.cid, size: await this.treeSize(c.cid) })
    return await this.imports.run(options.importId, async put => await this.finishImport(await buildDirectory(entries, async block => { await put(block.cid, block.bytes) }), options))
  }

  /** Bytes of all blocks under a held root (dag-pb Tsize). */
  private async treeSize (cid: CID): Promise<number> {
    const bytes = await this.blockstore.get(cid)
    if (cid.code === raw.code) return bytes.length
    const node = dagPb.decode(bytes)
    return bytes.length + node.Links.reduce((n, l) => n + (l.Tsize ?? 0), 0)
  }

  /** Resolves `path` under a root (a directory) to the CID it names. */
  async resolve (root: CID | string, path: string, options: { signal?: AbortSignal } = {}): Promise<ResolvedPath> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    const { get } = this.getter(cid, options)
    return await resolvePath(get, cid, path, options)
  }

  /** Lists a directory. */
  async ls (root: CID | string, options: { signal?: AbortSignal } = {}): Promise<DirEntry[]> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    const { get } = this.getter(cid, options)
    return await listDirectory(get, cid, options)
  }

  /** What a CID is and how much of it is here (fetches only its root when missing). */
  async stat (root: CID | string, options: { signal?: AbortSignal, hints?: CID[] } = {}): Promise<ContentStat> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    const pinned = (await this.blockstore.getPin(cid)) != null
    const { get } = this.getter(cid, options)
    const kind = await this.kindOf(get, cid, options.signal)
    if (kind === 'directory') return { cid: cid.toString(), kind, size: await this.treeSize(cid), pinned }
    const leaves = await fileLeaves(get, cid, options)
    return {
      cid: cid.toString(),
      kind,
      size: leaves.reduce((n, l) => n + l.size, 0),
      blocks: leaves.length,
      localBlocks: leaves.filter(l => this.blockstore.has(l.cid)).length,
      pinned
    }
  }

  private async kindOf (get: GetBlock, cid: CID, signal?: AbortSignal): Promise<'file' | 'directory'> {
    if (cid.code === raw.code) return 'file'
    if (cid.code !== dagPb.code) throw new UnsupportedContentError(`codec 0x${cid.code.toString(16)} is not UnixFS`)
    const bytes = await get(cid, { signal })
    let type: string
    try {
      const node = dagPb.decode(bytes)
      type = node.Data == null ? 'none' : UnixFS.unmarshal(node.Data).type
    } catch (err) {
      throw new UnsupportedContentError(`${cid.toString()} is not a UnixFS node: ${(err as Error).message}`)
    }
    if (type === 'directory') return 'directory'
    if (type === 'file' || type === 'raw') return 'file'
    throw new UnsupportedContentError(`UnixFS ${type} is not supported`)
  }

  /**
   * Streams [offset, offset + length) of a file. Missing blocks come from the swarm in order from
   * the read position; every block is verified before its bytes are yielded, and kept.
   */
  async * cat (root: CID | string, options: CatOptions = {}): AsyncGenerator<Uint8Array> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    const { get, download } = this.getter(cid, { ...options, holders: linkHolders(options.peers ?? [], this.swarm.protocols.peerId) })
    const leaves = await fileLeaves(get, cid, options)
    const offset = options.offset ?? 0
    const end = options.length == null ? Infinity : offset + options.length
    const reader = this.leafReader(get, download, leaves, offset, end, options.signal)
    let bytes = 0
    try {
      for await (const chunk of readFile(reader.get, cid, { offset: options.offset, length: options.length, signal: options.signal })) {
        bytes += chunk.length
        options.onProgress?.({ bytes })
        yield chunk
      }
    } finally {
      reader.release()
    }
  }

  /**
   * A block getter for the bytes [from, to) of a file whose leaves are known: when some of them
   * are missing, they are asked of the swarm in order, ahead of the reader, as one want of the
   * file's download. `release` withdraws that want, and what no one else waits for once the
   * reader went away (its signal aborted).
   */
  private leafReader (get: GetBlock, download: () => Download, leaves: Leaf[], from: number, to: number, signal?: AbortSignal): { get: GetBlock, release: () => void } {
    if (!leaves.some(l => l.offset + l.size > from && l.offset < to && !this.blockstore.has(l.cid))) return { get, release: () => {} }
    const d = download()
    d.setLeaves(leaves)
    const range = d.leafRange(from, to)
    const want = d.addWant(range.from, range.to, true)
    const leafGet: GetBlock = async (c, o) => {
      if (this.blockstore.has(c)) {
        try { return await this.blockstore.get(c) } catch (err) { if (!(err instanceof BlockNotFoundError)) throw err }
      }
      return await d.getBlock(c, { signal: o.signal ?? signal, want })
    }
    return { get: leafGet, release: () => { d.removeWant(want); if (signal?.aborted === true) d.cancelIdle() } }
  }

  /**
   * Fetches a whole file or directory into the store (rarest first, from every holder found),
   * then announces it. Resumes from the blocks already held. Aborted (the client went away), it
   * stops its downloads unless another request waits for them, and forgets the root unless
   * another fetch of it goes on; failed, it is kept and resumed on the next start (see
   * resumeDownloads).
   */
  async fetch (root: CID | string, options: FetchOptions = {}): Promise<ContentStat> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    log('fetch of %s', cid)
    const holders = linkHolders(options.peers ?? [], this.swarm.protocols.peerId)
    const key = cid.toString()
    const record: DownloadRecord = await this.blockstore.getDownload(cid) ?? { cid: key, attempts: 0, since: Date.now(), found: false }
    record.attempts++
    record.found ||= this.blockstore.has(cid)
    const wasUnwanted = this.unwanted.keep(key)
    try {
      await this.blockstore.markDownload(record)
    } catch (err) {
      if (wasUnwanted && !this.fetching.has(key)) void this.unwanted.forget(key)
      throw err
    }
    this.fetching.set(key, (this.fetching.get(key) ?? 0) + 1)
    const used: Download[] = []
    let files = 0
    let fetchedBlocks = 0
    const walk = async (c: CID, depth: number, hints: CID[]): Promise<void> => {
      if (depth > MAX_FETCH_DEPTH) throw new UnsupportedContentError(`directories deeper than ${MAX_FETCH_DEPTH}`)
      const { get, download } = this.getter(c, { signal: options.signal, hints, used, holders })
      const kind = await this.kindOf(get, c, options.signal)
      if (kind === 'directory') {
        for (const entry of await listDirectory(get, c, options)) {
          if (++files > MAX_FETCH_ENTRIES) throw new UnsupportedContentError(`more than ${MAX_FETCH_ENTRIES} entries`)
          await walk(entry.cid, depth + 1, [cid])
        }
        return
      }
      files++
      const leaves: Leaf[] = await fileLeaves(get, c, options)
      if (leaves.every(l => this.blockstore.has(l.cid))) return
      const d = download()
      d.setLeaves(leaves)
      const before = d.blocksFromPeers
      try {
        await d.complete(0, leaves.length, {
          signal: options.signal,
          directPathTimeoutMs: options.directPathTimeoutMs ?? this.directPathTimeoutMs,
          onProgress: p => { options.onProgress?.({ ...p, cid: c.toString(), files }) }
        })
      } finally {
        fetchedBlocks += d.blocksFromPeers - before
      }
    }
    try {
      await walk(cid, 0, [])
      if (this.fetching.get(key) === 1) await this.unwanted.forget(key)
    } catch (err) {
      const last = this.fetching.get(key) === 1
      if (options.signal?.aborted === true || isStoreFailure(err)) {
        // Aborted, or our store cannot keep the blocks: not resumed on the next start.
        for (const d of used) this.swarm.halt(d)
        if (last) await this.unwanted.forget(key)
      } else if (!record.found && this.blockstore.has(cid)) {
        await this.blockstore.markDownload({ ...record, found: true }).catch(() => {})
      }
      throw err
    } finally {
      const n = (this.fetching.get(key) ?? 1) - 1
      if (n <= 0) this.fetching.delete(key)
      else this.fetching.set(key, n)
    }
    this.provide(cid)
    return { ...await this.stat(cid, options), fetchedBlocks }
  }

  /** A content link: the CID and this peer's shareable addresses (`pv:content=<CID>&peer=...`). */
  link (root: CID | string): Link {
    const cid = typeof root === 'string' ? parseCid(root) : root
    const { protocols } = this.swarm
    return { kind: 'content', target: cid.toString(), peers: shareableAddresses(protocols.addresses(), protocols.peerId) }
  }

  /** One block, held or fetched from the swarm (verified either way). */
  async block (root: CID | string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    return await this.getter(cid, options).get(cid, options)
  }

  /** The directories a path under `root` walks through and the CID it names (fetching what is missing). */
  async dagPath (root: CID, segments: string[], options: { signal?: AbortSignal } = {}): Promise<{ along: CID[], terminus: CID }> {
    return await walkPath(this.getter(root, options).get, root, segments, options)
  }

  /**
   * The blocks of a CAR of `cid` in depth-first order (see car-dag.ts), as they are read or
   * fetched: a file's missing leaves come from the swarm in order, ahead of the reader.
   */
  dagBlocks (cid: CID, options: DagWalkOptions & { hints?: CID[] } = {}): AsyncGenerator<Block> {
    const signal = options.signal
    const { get } = this.getter(cid, options)
    const source: DagSource = {
      get,
      file: (root, leaves, from, to) => this.leafReader(get, this.getter(root, { signal, hints: [cid, ...options.hints ?? []] }).download, leaves, from, to, signal)
    }
    return dagBlocks(source, cid, options)
  }

  /**
   * Imports a CARv1 stream block by block (each checked against its CID before it is stored),
   * then checks that every root's DAG is whole, pins the roots and announces them. Any failure
   * (MalformedCarError, CarBlockMismatchError, CarTooLargeError, CarIncompleteError, a full disk)
   * removes the blocks it wrote: nothing of a refused CAR stays.
   */
  async importCar (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: CarReadOptions & { name?: string } = {}): Promise<CarImportResult> {
    return await this.imports.run(undefined, async put => {
      const result = await importCar(source, this.blockstore, async (cid, bytes) => { await put(cid, bytes); this.swarm.stored(cid) }, options)
      for (const root of result.roots) {
        const stat = await this.stat(root, options)
        await this.blockstore.pin({ cid: root.toString(), size: stat.size, name: options.name, pinnedAt: Date.now() })
        this.provide(root)
      }
      return result
    })
  }

  /** Pins a root, fetching whatever of it is missing first. */
  async pin (root: CID | string, options: FetchOptions & { name?: string } = {}): Promise<PinInfo> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    const stat = await this.fetch(cid, options)
    const info: PinInfo = { cid: cid.toString(), size: stat.size, name: options.name, pinnedAt: Date.now() }
    await this.blockstore.pin(info)
    return info
  }

  /** Unpins a root; its blocks stay until garbage collection. */
  async unpin (root: CID | string): Promise<boolean> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    return await this.blockstore.unpin(cid)
  }

  async pins (): Promise<PinInfo[]> {
    return await this.blockstore.pins()
  }

  /** `keep` and the blocks reachable from a pin or a download still wanted. */
  private async reachableFrom (keep: Set<string>): Promise<Set<string>> {
    const downloads = (await this.blockstore.downloads()).filter(d => !this.unwanted.has(d.cid))
    const roots = [...(await this.pins()).map(p => parseCid(p.cid)), ...downloads.map(d => parseCid(d.cid))]
    const mark = async (cid: CID, depth: number): Promise<void> => {
      const key = cid.toString()
      if (keep.has(key) || depth > MAX_FETCH_DEPTH + 8) return
      keep.add(key)
      if (cid.code !== dagPb.code || !this.blockstore.has(cid)) return
      let bytes: Uint8Array
      try { bytes = await this.blockstore.get(cid) } catch { return }
      for (const link of dagPb.decode(bytes).Links) await mark(link.Hash, depth + 1)
    }
    for (const root of roots) await mark(root, 0)
    return keep
  }

  /**
   * Removes every block not reachable from a pin or a download in progress, and what a crash or a
   * failed write left behind; then stops announcing roots no longer held whole. It only reads
   * before it has freed space, so it works on a full disk.
   */
  async gc (): Promise<SweepResult> {
    const keep = await this.reachableFrom(this.imports.held())
    const result = await this.blockstore.sweep(keep)
    const provided = await this.blockstore.providedRoots().catch(() => [] as CID[])
    for (const root of provided) {
      if (!this.blockstore.has(root)) {
        await this.blockstore.unmarkProvided(root).catch(() => {})
        await this.routing.cancelProvide(root).catch(() => {})
      }
    }
    return result
  }

  /** Peers the DHT names as holders of a CID (a network lookup; dials none of them). */
  async providers (root: CID | string): Promise<string[]> {
    const cid = typeof root === 'string' ? parseCid(root) : root
    return await this.swarm.findProviders(cid)
  }

  /** Announces a root in the DHT (in the background; kad-dht re-announces it on a schedule). */
  provide (cid: CID): void {
    this.provideQueue.push(cid)
    this.drainProvides()
  }

  private drainProvides (): void {
    while (this.provides < this.maxConcurrentProvides && this.provideQueue.length > 0) {
      const cid = this.provideQueue.shift() as CID
      this.provides++
      void (async () => {
        try {
          await this.blockstore.markProvided(cid)
          if (this.started) await this.routing.provide(cid, { signal: AbortSignal.timeout(this.provideTimeoutMs) })
        } catch {
        } finally {
          this.provides--
          this.drainProvides()
        }
      })()
    }
  }
}
