/**
 * Block sync over `/peerverse/ledger/sync/1.0.0`: a node behind its peers asks one for the blocks
 * past its head (a request naming the first height; the answer is up to MAX_SYNC_BLOCKS frames,
 * each a block with its commit) and commits each in turn, checked against its commit. One
 * request/response exchange per ask (net/rpc.ts), so bounds and deadlines live there.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS } from '../net/limits.ts'
import type { ProtocolPort, RejectSink } from '../net/ports.ts'
import { request, serve } from '../net/rpc.ts'
import { decodeBlock, encodeBlock, MAX_BLOCK_BYTES, type ChainStore, type StoredBlock } from './chain.ts'
import { SYNC_PROTOCOL } from './wire.ts'

/** Blocks in one sync answer. */
export const MAX_SYNC_BLOCKS = 32
/** Largest sync request (a small DAG-CBOR map). */
export const MAX_SYNC_REQUEST_BYTES = 1024
/** Largest answer frame: a block and its commit. */
export const MAX_SYNC_FRAME_BYTES = MAX_BLOCK_BYTES * 2
/** How often a node behind its peers asks them for blocks (the default of LedgerInit.syncIntervalMs). */
export const SYNC_INTERVAL_MS = 2_000

export class InvalidSyncRequestError extends Error {
  name = 'InvalidSyncRequestError'
}

/** A sync answer frame: a block with its commit. */
export function encodeSyncFrame (stored: StoredBlock): Uint8Array {
  return dagCbor.encode({ block: encodeBlock(stored.block), commit: stored.commit })
}

/** Decodes a sync answer frame (or a block gossiped on the blocks topic, the same format). */
export function decodeSyncFrame (frame: Uint8Array): StoredBlock {
  const { block, commit } = dagCbor.decode(frame) as { block: Uint8Array, commit: Uint8Array[] }
  return { block: decodeBlock(block), commit }
}

export interface BlockSyncOptions {
  protocols: ProtocolPort
  onRejected?: RejectSink
  chain: ChainStore
  /** Our committed height. */
  height: () => number
  /** Commits a block if it is the next one (one step at a time with the rest of the ledger); whether it did. */
  commit: (stored: StoredBlock) => Promise<boolean>
}

export class BlockSync {
  private readonly o: BlockSyncOptions
  private handled = false
  private syncing = false

  constructor (options: BlockSyncOptions) {
    this.o = options
  }

  async start (): Promise<void> {
    if (this.handled) return
    this.handled = true
    await this.o.protocols.handle(SYNC_PROTOCOL, serve({
      protocol: SYNC_PROTOCOL,
      maxRequestBytes: MAX_SYNC_REQUEST_BYTES,
      onRejected: this.o.onRejected,
      isViolation: err => err.name === 'InvalidSyncRequestError'
    }, async (req, { signal, out }) => {
      let from: unknown
      try {
        from = (dagCbor.decode(req) as { from?: unknown }).from
      } catch (err) {
        throw new InvalidSyncRequestError(`not DAG-CBOR: ${(err as Error).message}`)
      }
      if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 1) throw new InvalidSyncRequestError('from must be a positive integer')
      let n = 0
      for (let h = from; h <= this.o.height() && n < MAX_SYNC_BLOCKS; h++, n++) {
        const stored = await this.o.chain.getBlock(h)
        if (stored == null) break
        await out.write(encodeSyncFrame(stored), { signal })
      }
    }), {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      // An answer is a bounded batch (MAX_SYNC_BLOCKS): it runs over relayed links too.
      runOnLimitedConnection: true
    })
  }

  async stop (): Promise<void> {
    if (!this.handled) return
    this.handled = false
    await this.o.protocols.unhandle(SYNC_PROTOCOL)
  }

  /** Asks connected peers, one after another, for blocks past our head until one has some. */
  async syncFromPeers (): Promise<void> {
    if (this.syncing || !this.handled) return
    this.syncing = true
    try {
      for (const peer of this.o.protocols.peers()) {
        const got = await this.syncWith(peer).catch(() => 0)
        if (got > 0) return
      }
    } finally {
      this.syncing = false
    }
  }

  /** Asks one peer; returns how many of its blocks we committed. */
  private async syncWith (peer: string): Promise<number> {
    let got = 0
    try {
      await request(this.o.protocols, peer, SYNC_PROTOCOL, dagCbor.encode({ from: this.o.height() + 1 }), async frame => {
        if (await this.o.commit(decodeSyncFrame(frame))) got++
        return true
      }, { maxFrameBytes: MAX_SYNC_FRAME_BYTES, runOnLimitedConnection: true })
    } catch (err) {
      // An answer cut short still counts for the blocks it brought.
      if (got === 0) throw err
    }
    return got
  }
}
