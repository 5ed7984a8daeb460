/**
 * How transactions travel between peers: ours leave in batches, and peers' arrive in batches into
 * an inbox that is checked into the mempool in short slices.
 *
 * Out: our transactions wait at most TX_BATCH_INTERVAL_MS to go together in one batch (one gossip
 * message, and so one GossipSub signature, per batch). A validator sends its batches straight to
 * its neighbours over the chain's mempool protocol (links.ts; they do not forward them); with none
 * that speaks the protocol yet, and for peers that are not validators, GossipSub carries them.
 *
 * In: batches from the transaction topic or a mempool stream go to an inbox checked in slices of
 * TX_CHECK_SLICE_MS, one turn of the event loop each, so a vote or proposal that arrives behind a
 * flood of transactions is handled at once instead of after all of their signature checks (as
 * CometBFT runs its mempool and consensus reactors apart).
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { framed } from '../net/framed.ts'
import type { GossipPort, ProtocolPort, RejectSink, RemotePeer } from '../net/ports.ts'
import { LinkedChannel } from './links.ts'
import { MAX_MEMPOOL_TXS } from './mempool.ts'
import {
  decodeTxBatch, encodeTxBatch, InvalidTxBatchError, ledgerTopic, MAX_TX_BATCH_BYTES, MAX_TX_BATCH_MESSAGE_BYTES, MAX_TX_BATCH_TXS, mempoolProtocol
} from './wire.ts'

const log = logger('peerverse:ledger')

/** Our transactions wait at most this long to be gossiped together in one batch (the default of LedgerInit.txBatchIntervalMs). */
export const TX_BATCH_INTERVAL_MS = 50
/** Gossiped transactions are checked in slices of at most this long, each its own turn of the event loop. */
export const TX_CHECK_SLICE_MS = 4
/** Gossiped transactions waiting to be checked at most; a batch that would go past it is dropped whole. */
export const MAX_TX_INBOX = MAX_MEMPOOL_TXS
/** Batches queued for one peer's mempool stream at most; past it the batch goes over GossipSub as well. */
export const MAX_MEMPOOL_STREAM_QUEUE = 16
/** A peer that refused the mempool (or consensus) protocol is not asked again for this long. */
export const MEMPOOL_RETRY_MS = 30_000

export interface TxChannelOptions {
  chain: string
  gossip: GossipPort
  protocols: ProtocolPort
  onRejected?: RejectSink
  /** Checks one transaction's bytes into the mempool; throws when it is refused. */
  admit: (bytes: Uint8Array) => void
  /** After a slice of the inbox that added transactions to the mempool. */
  onAdded: () => void
  /** Whether our batches go straight to our neighbours (validators' do). */
  direct: () => boolean
  batchIntervalMs?: number
}

export class TxChannel {
  private readonly o: TxChannelOptions
  private readonly protocol: string
  private readonly batchIntervalMs: number
  private readonly channel: LinkedChannel
  private started = false
  /** Peers' transactions waiting to be checked, from inboxHead on (see TX_CHECK_SLICE_MS). */
  private inbox: Uint8Array[] = []
  /** When each inbox entry came (performance.now()). */
  private inboxAt: number[] = []
  private inboxHead = 0
  private inboxTimer?: ReturnType<typeof setImmediate>
  /** Our transactions waiting to go as one batch (see TX_BATCH_INTERVAL_MS). */
  private outbox: Uint8Array[] = []
  private outboxBytes = 0
  private outboxTimer?: ReturnType<typeof setTimeout>

  constructor (options: TxChannelOptions) {
    this.o = options
    this.protocol = mempoolProtocol(options.chain)
    this.batchIntervalMs = options.batchIntervalMs ?? TX_BATCH_INTERVAL_MS
    this.channel = new LinkedChannel(options, ledgerTopic(options.chain, 'txs'), this.protocol, {
      maxFrameBytes: MAX_TX_BATCH_MESSAGE_BYTES, maxQueue: MAX_MEMPOOL_STREAM_QUEUE, retryMs: MEMPOOL_RETRY_MS
    }, {
      onGossip: data => { this.take(data) },
      onStream: (stream, remote) => { void this.readStream(stream, remote) }
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.channel.start()
  }

  /** Sends what is queued (over GossipSub) and drops what waits to be checked; the links stay until `close`. */
  halt (): void {
    if (!this.started) return
    this.started = false
    this.flush()
    this.channel.halt()
    if (this.inboxTimer != null) clearImmediate(this.inboxTimer)
    this.inboxTimer = undefined
    this.inbox = []
    this.inboxAt = []
    this.inboxHead = 0
  }

  /** Stops handling the mempool protocol and closes our streams (after `halt`). */
  async close (): Promise<void> {
    await this.channel.close()
  }

  /** Peers' transactions waiting to be checked. */
  get inboxSize (): number { return this.inbox.length - this.inboxHead }

  /** How long (ms) the oldest transaction in the inbox has waited to be checked; 0 when it is empty. */
  inboxWaitMs (now = performance.now()): number {
    return this.inboxHead < this.inbox.length ? now - this.inboxAt[this.inboxHead] : 0
  }

  /** Queues one of our transactions for the next batch. */
  send (bytes: Uint8Array): void {
    if (this.outbox.length >= MAX_TX_BATCH_TXS || this.outboxBytes + bytes.length > MAX_TX_BATCH_BYTES) this.flush()
    this.outbox.push(bytes)
    this.outboxBytes += bytes.length
    if (this.outboxTimer == null) {
      this.outboxTimer = setTimeout(() => { this.flush() }, this.batchIntervalMs)
      this.outboxTimer.unref?.()
    }
  }

  /** Sends the queued transactions as one batch. */
  private flush (): void {
    clearTimeout(this.outboxTimer)
    this.outboxTimer = undefined
    if (this.outbox.length === 0) return
    const batch = encodeTxBatch(this.outbox)
    this.outbox = []
    this.outboxBytes = 0
    if (this.started && this.o.direct() && this.sendDirect(batch)) return
    this.channel.publish(batch)
  }

  /**
   * Sends a batch straight to every connected peer that speaks our chain's mempool protocol;
   * returns whether it went on an open stream and no peer's queue was full. When a peer's queue is
   * full (a loaded peer reads slowly), GossipSub carries the batch too: a batch one validator
   * misses leaves a gap in its senders' nonces, and every later transaction of theirs waits there
   * (a proposer holding them as gaps cannot include them).
   */
  private sendDirect (batch: Uint8Array): boolean {
    const links = this.channel.links
    if (links == null) return false
    let open = 0
    let missed = 0
    for (const peer of this.o.protocols.peers()) {
      const sent = links.send(peer, batch)
      if (sent === 'open') open++
      else if (sent === 'full') missed++
    }
    // With no open stream yet (one being dialled may be refused), GossipSub carries the batch too.
    return open > 0 && missed === 0
  }

  /** A batch from a peer (gossiped, or on a mempool stream) into the inbox; false when refused. */
  take (data: Uint8Array): boolean {
    if (!this.started) return false
    let txs: Uint8Array[]
    try {
      txs = decodeTxBatch(data)
    } catch (err) {
      log('bad transaction batch: %s', (err as Error).message)
      return false
    }
    if (this.inbox.length - this.inboxHead + txs.length > MAX_TX_INBOX) {
      log('transaction inbox full: dropped a batch of %d', txs.length)
      return true
    }
    const at = performance.now()
    for (const t of txs) { this.inbox.push(t); this.inboxAt.push(at) }
    this.inboxTimer ??= setImmediate(() => { this.checkInbox() })
    return true
  }

  /** Reads a peer's mempool stream: length-prefixed batches, each into the inbox; a malformed one ends the stream. */
  private async readStream (stream: Stream, remote: RemotePeer): Promise<void> {
    const f = framed(stream, { maxFrameBytes: MAX_TX_BATCH_MESSAGE_BYTES })
    try {
      while (this.started) {
        const frame = await f.read()
        if (frame == null) break
        if (!this.take(frame)) {
          if (!this.started) break
          throw new InvalidTxBatchError('not a transaction batch')
        }
      }
    } catch (err) {
      stream.abort(err as Error)
      const name = (err as Error).name
      if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError' || name === 'InvalidTxBatchError') this.o.onRejected?.(remote.peer, this.protocol, err as Error)
      return
    }
    stream.abort(new Error('mempool stream ended'))
  }

  /** Checks waiting transactions into the mempool for one slice, then yields (TX_CHECK_SLICE_MS). */
  private checkInbox (): void {
    this.inboxTimer = undefined
    if (!this.started) return
    const until = performance.now() + TX_CHECK_SLICE_MS
    let added = 0
    while (this.inboxHead < this.inbox.length) {
      const bytes = this.inbox[this.inboxHead++]
      try {
        this.o.admit(bytes)
        added++
      } catch {}
      if (performance.now() >= until) break
    }
    if (this.inboxHead === this.inbox.length) {
      this.inbox = []
      this.inboxAt = []
      this.inboxHead = 0
    } else {
      if (this.inboxHead > 4096) { this.inbox = this.inbox.slice(this.inboxHead); this.inboxAt = this.inboxAt.slice(this.inboxHead); this.inboxHead = 0 }
      this.inboxTimer = setImmediate(() => { this.checkInbox() })
    }
    if (added > 0) this.o.onAdded()
  }
}
