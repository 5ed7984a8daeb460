/**
 * The ledger service: runs the chain on the peer network. Validators drive the consensus state
 * machine (consensus.ts) with proposals and votes gossiped on the chain's consensus topic; every
 * node, validator or not, applies committed blocks (checked against their commit) to the pure
 * state (state.ts), keeps a mempool of gossiped transactions, and catches up by fetching blocks
 * by height from peers over `/peerverse/ledger/sync/1.0.0`.
 *
 * Safety across crashes: the consensus state is written (synced) to a write-ahead record before
 * any proposal or vote leaves the node, and a committed block is written (synced) before the
 * node moves to the next height, so kill -9 at any moment loses no committed block and cannot make
 * a validator sign two different messages for one height, round and step.
 *
 * Work done once (the measured costs: an Ed25519 verify is ~110 us, executing a block of 1,000
 * transfers a few ms once verified): every transaction's signature is checked once per node, by a
 * VerifiedTxCache shared by the mempool and every block check; a block is executed once per node
 * at a height (the proposer keeps what it computed while building, the others what they computed
 * checking the proposal) and the commit reuses that result; transactions are gossiped in batches
 * (one GossipSub message, and so one GossipSub signature, per batch); and the next height starts
 * as soon as a block is committed (CometBFT's skip_timeout_commit), its proposer waiting briefly
 * only while it holds few transactions (PROPOSE_AT_ONCE_TXS, BLOCK_FILL_WAIT_MS).
 *
 * Consensus first: gossiped transactions go to an inbox checked in short slices, one turn of the
 * event loop each (TX_CHECK_SLICE_MS), so a vote or proposal that arrives behind a flood of
 * transactions is handled at once instead of after all of their signature checks.
 *
 * Wire formats: the consensus topic carries signed votes, proposal messages and evidence of double
 * votes (the two signed votes; chain.ts), which whoever catches one gossips so that every node
 * keeps it; the transaction topic carries batches, a DAG-CBOR list of transactions. Validators
 * send their batches over the chain's mempool protocol, and their votes and proposals over its
 * consensus protocol, straight to their neighbours (length-prefixed, the same bytes; links.ts),
 * and use the topics only to reach whom they have no link to. Both topics have a version in their
 * names: version 2 is the proposal-beside-block format and the batches.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { TypedEventEmitter } from 'main-event'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { recordId } from '../identity/record.ts'
import type { Network } from '../net/network.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS, PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import {
  ChainStore, decodeBlock, decodeConsensusMessage, decodeVote, encodeBlock, encodeEvidenceMessage, InvalidEvidenceError, MAX_BLOCK_BYTES, MAX_PROPOSAL_MESSAGE_BYTES,
  signProposal, signVote, verifyCommit, type DoubleVote, type StoredBlock
} from './chain.ts'
import { Consensus, proposer, type Action } from './consensus.ts'
import { MAX_MEMPOOL_TXS, Mempool } from './mempool.ts'
import {
  blockHash, buildBlock, checkBlock, genesisState, proveKey, stateRoot, type Block, type Genesis, type LedgerState, type Receipt
} from './state.ts'
import { MAX_TX_BYTES, signTx, VerifiedTxCache, type Tx, type TxOp } from './tx.ts'
import type { StateProof } from './merkle.ts'
import { FAUCET_GRANT, faucetDid, faucetKey } from './genesis.ts'
import { DirectLinks } from './links.ts'

const log = logger('peerverse:ledger')

export const SYNC_PROTOCOL = '/peerverse/ledger/sync/1.0.0'
/** Version of the consensus and transaction topics' wire formats (in their names). */
export const TOPIC_VERSION = 2
/** Blocks in one sync answer. */
export const MAX_SYNC_BLOCKS = 32
/** Transactions a block holds at most (by count). */
export const MAX_TXS_PER_BLOCK = 2_000
/**
 * Bytes of transactions a block holds at most: with the header and the encoding's framing (a few
 * bytes a transaction) under MAX_BLOCK_BYTES, so a proposal message stays under
 * MAX_PROPOSAL_MESSAGE_BYTES and a committed block with its commit under the gossip ceiling.
 */
export const MAX_BLOCK_TX_BYTES = 320 * 1024
/** Pause after a commit before the next height starts (CometBFT's timeout_commit); 0 starts it at once. */
export const COMMIT_PAUSE_MS = 0
/** A proposer with an empty mempool waits this long for a transaction before proposing an empty block (below the propose timeout). */
export const EMPTY_BLOCK_WAIT_MS = 2_000
/** A proposer holding at least this many transactions proposes at once; with fewer it waits (see BLOCK_FILL_WAIT_MS). */
export const PROPOSE_AT_ONCE_TXS = 256
/** A proposer holding fewer than PROPOSE_AT_ONCE_TXS waits this long after the first for more (so a trickle is not a block per transaction). */
export const BLOCK_FILL_WAIT_MS = 100
/**
 * A validator sends its transaction batches straight to each connected peer over this protocol
 * (CometBFT's mempool reactor) rather than over GossipSub: a peer does not forward what came this
 * way, so each batch reaches each neighbour once, where GossipSub's mesh delivers every copy three
 * times between four validators. Peers that are not validators gossip theirs, which relays them.
 */
export function mempoolProtocol (chain: string): string {
  // Per chain: a peer on another chain does not speak it, so it is never sent our transactions.
  return `/peerverse/ledger/${encodeURIComponent(chain)}/mempool/1.0.0`
}
/** Batches queued for one peer's mempool stream at most; past it that peer misses batches (it gets them in the proposal). */
export const MAX_MEMPOOL_STREAM_QUEUE = 16
/** A peer that refused the mempool (or consensus) protocol is not asked again for this long. */
export const MEMPOOL_RETRY_MS = 30_000
/**
 * A validator sends its proposals and votes straight to the other validators over this protocol
 * (CometBFT's consensus reactor), once it knows which connected peer acts for which validator (the
 * peers' signed bindings). Messages that came this way are not forwarded. While some validator is
 * not reachable so, the message goes over GossipSub too, whose mesh relays it: a validator with no
 * direct link to another still hears from it and is heard.
 */
export function consensusProtocol (chain: string): string {
  return `/peerverse/ledger/${encodeURIComponent(chain)}/consensus/1.0.0`
}
/** Consensus messages queued for one validator's stream at most; past it the message goes over GossipSub. */
export const MAX_CONSENSUS_STREAM_QUEUE = 64
/** Proposal messages of the current height kept to send again (the scheduled proposers' and ours). */
export const MAX_PROPOSALS_KEPT = 8
/** How often a node behind its peers asks them for blocks. */
export const SYNC_INTERVAL_MS = 2_000
/**
 * Our transactions wait at most this long to be gossiped together in one batch. Each gossip
 * message costs every validator a signature check, a copy from each mesh peer and a forward, so
 * fewer, larger batches leave the cores to the transactions.
 */
export const TX_BATCH_INTERVAL_MS = 50
/** Transactions in one gossiped batch at most. */
export const MAX_TX_BATCH_TXS = 512
/** Bytes of transactions in one gossiped batch at most. */
export const MAX_TX_BATCH_BYTES = 128 * 1024
/** An encoded batch at most: MAX_TX_BATCH_BYTES of transactions plus each one's CBOR header and the list's. */
export const MAX_TX_BATCH_MESSAGE_BYTES = MAX_TX_BATCH_BYTES + 3 * MAX_TX_BATCH_TXS + 5
/**
 * Gossiped transactions are checked in slices of at most this long, each its own turn of the event
 * loop, so consensus messages queued behind a flood of transactions are not held up by it (as
 * CometBFT runs its mempool and consensus reactors apart).
 */
export const TX_CHECK_SLICE_MS = 4
/** Gossiped transactions waiting to be checked at most; a batch that would go past it is dropped whole. */
export const MAX_TX_INBOX = MAX_MEMPOOL_TXS
/** Rejected transactions whose reason is kept for txStatus (oldest forgotten first). */
export const MAX_REJECTED_KEPT = 10_000
/** Executed blocks (post-state and receipts) kept for the current height, for the commit to reuse. */
export const MAX_EXECUTED_BLOCKS = 8

/** Gossiped evidence of a double vote is kept only for heights this close to ours. */
export const MAX_EVIDENCE_AGE_HEIGHTS = 1000

/** Whether gossiped evidence for `height` is kept by a node at `ours`: up to two heights ahead, MAX_EVIDENCE_AGE_HEIGHTS behind. */
export function evidenceHeightKept (height: number, ours: number): boolean {
  return height <= ours + 2 && height + MAX_EVIDENCE_AGE_HEIGHTS >= ours
}

/** Signed votes kept for one height at most. */
export const MAX_VOTES_KEPT = 50_000

export type LedgerTopic = 'consensus' | 'blocks' | 'txs'

/** A chain's gossip topic of one kind (the consensus and transaction topics carry TOPIC_VERSION). */
export function ledgerTopic (chain: string, kind: LedgerTopic): string {
  return kind === 'blocks' ? `peerverse/ledger/${chain}/blocks` : `peerverse/ledger/${chain}/${kind}/${TOPIC_VERSION}`
}

export class InvalidTxBatchError extends Error {
  name = 'InvalidTxBatchError'
}

/** Encodes a batch of transactions for the transaction topic. */
export function encodeTxBatch (txs: Uint8Array[]): Uint8Array {
  if (txs.length > MAX_TX_BATCH_TXS) throw new InvalidTxBatchError(`more than ${MAX_TX_BATCH_TXS} transactions`)
  return dagCbor.encode(txs)
}

/** Decodes a gossiped batch: a list of at most MAX_TX_BATCH_TXS transactions' bytes, MAX_TX_BATCH_BYTES in all. */
export function decodeTxBatch (data: Uint8Array): Uint8Array[] {
  // Each transaction adds at most 3 bytes of framing (MAX_TX_BYTES < 2^16), the list at most 5.
  if (data.length > MAX_TX_BATCH_MESSAGE_BYTES) throw new InvalidTxBatchError(`batch is over ${MAX_TX_BATCH_BYTES} bytes`)
  let value: unknown
  try {
    value = dagCbor.decode(data)
  } catch (err) {
    throw new InvalidTxBatchError(`not DAG-CBOR: ${(err as Error).message}`)
  }
  if (!Array.isArray(value) || value.length > MAX_TX_BATCH_TXS || !value.every(t => t instanceof Uint8Array && t.length <= MAX_TX_BYTES)) {
    throw new InvalidTxBatchError(`a batch is a list of at most ${MAX_TX_BATCH_TXS} transactions of at most ${MAX_TX_BYTES} bytes`)
  }
  let bytes = 0
  for (const t of value as Uint8Array[]) bytes += t.length
  if (bytes > MAX_TX_BATCH_BYTES) throw new InvalidTxBatchError(`batch holds over ${MAX_TX_BATCH_BYTES} bytes of transactions`)
  return value as Uint8Array[]
}

function voteKey (v: { validator: string, height: number, round: number, type: string, value: string | null }): string {
  return `${v.validator}/${v.height}/${v.round}/${v.type}/${v.value ?? 'nil'}`
}

export class NotValidatorError extends Error {
  name = 'NotValidatorError'
}

export interface LedgerEvents {
  'ledger:block': CustomEvent<{ height: number, hash: string, txs: number, stateRoot: string }>
  'ledger:receipt': CustomEvent<Receipt>
  'ledger:evidence': CustomEvent<{ validator: string, height: number, round: number }>
}

export interface LedgerComponents {
  net: Network
  chain: ChainStore
  /** The node's user key: it signs our transactions, and our votes when we are a validator. */
  key: Ed25519Key
  did: string
  genesis: Genesis
  publish: (topic: string, data: Uint8Array) => Promise<number>
  subscribe: (topic: string) => void
  /** The did a connected peer acts for, from its signed binding (undefined: not known yet). */
  didOf?: (peerId: string) => string | undefined
}

export type TxStatus =
  | { status: 'pending' }
  | { status: 'committed', height: number, receipt: Receipt }
  | { status: 'rejected', error: string, message: string }
  | { status: 'unknown' }

export class LedgerService extends TypedEventEmitter<LedgerEvents> {
  state: LedgerState
  readonly mempool: Mempool
  readonly genesis: Genesis
  /** Every transaction's signature is checked once here, whoever asks (mempool, proposal, commit). */
  readonly txCache: VerifiedTxCache
  private readonly c: LedgerComponents
  private consensus?: Consensus
  /** Blocks proposed at the current height, by hash. */
  private readonly proposed = new Map<string, Block>()
  /** Blocks executed on top of `state` at the current height, by hash (bounded by MAX_EXECUTED_BLOCKS). */
  private readonly executed = new Map<string, { parent: LedgerState, state: LedgerState, receipts: Receipt[] }>()
  /** Messages for the next heights, replayed when we get there (bounded). */
  private readonly early: Uint8Array[] = []
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  /** Our proposal waiting for transactions (see EMPTY_BLOCK_WAIT_MS). */
  private waitingForTxs?: { timer: ReturnType<typeof setTimeout>, fill?: ReturnType<typeof setTimeout>, onTx: () => void }
  /** (height/round)s whose proposal has waited for transactions already. */
  private readonly waited = new Set<string>()
  /** Signed bytes of this height's votes, to build the commit and evidence from. */
  private readonly voteBytes = new Map<string, Uint8Array>()
  /** This height's proposal messages, to send again (bounded by MAX_PROPOSALS_KEPT). */
  private readonly proposalBytes = new Map<string, Uint8Array>()
  private readonly rejected = new Map<string, { error: string, message: string }>()
  /** Gossiped transactions waiting to be checked, from inboxHead on (see TX_CHECK_SLICE_MS). */
  private inbox: Uint8Array[] = []
  private inboxHead = 0
  private inboxTimer?: ReturnType<typeof setImmediate>
  /** Our mempool and consensus streams to our neighbours (see mempoolProtocol, consensusProtocol). */
  private mempoolLinks?: DirectLinks
  private consensusLinks?: DirectLinks
  /** Consensus messages taken in, by the way they came (for status and tests). */
  readonly consensusReceived = { direct: 0, gossip: 0 }
  /** Our transactions waiting to be gossiped as one batch (see TX_BATCH_INTERVAL_MS). */
  private outbox: Uint8Array[] = []
  private outboxBytes = 0
  private outboxTimer?: ReturnType<typeof setTimeout>
  private syncTimer?: ReturnType<typeof setInterval>
  /** The height the consensus was last started for. */
  private heightStarted = 0
  private started = false
  private busy: Promise<void> = Promise.resolve()

  constructor (components: LedgerComponents) {
    super()
    this.c = components
    this.genesis = components.genesis
    this.state = genesisState(components.genesis)
    this.txCache = new VerifiedTxCache()
    this.mempool = new Mempool(components.genesis.chain, { decode: this.txCache.decode })
  }

  get chainId (): string { return this.genesis.chain }
  private topic (kind: LedgerTopic): string { return ledgerTopic(this.chainId, kind) }

  get isValidator (): boolean { return this.validates(this.c.did) }

  /** Whether `did` is one of the validators of the height being decided. */
  private validates (did: string): boolean { return this.state.validators.some(v => v.id === did) }

  /** Blocks executed and kept at the current height (at most MAX_EXECUTED_BLOCKS). */
  get executedBlocks (): number { return this.executed.size }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    // Replay committed blocks: the state is a pure function of them.
    for await (const stored of this.c.chain.blocks(1)) {
      const { state } = checkBlock(this.state, stored.block, { decode: this.txCache.decode })
      this.state = state
    }
    log('chain %s at height %d', this.chainId, this.state.height)
    for (const kind of ['consensus', 'blocks', 'txs'] as const) this.c.subscribe(this.topic(kind))
    await this.c.net.handle(SYNC_PROTOCOL, (stream, connection) => { void this.serveSync(stream, connection) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS
    })
    await this.c.net.handle(mempoolProtocol(this.chainId), (stream) => { void this.readMempoolStream(stream) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS
    })
    await this.c.net.handle(consensusProtocol(this.chainId), (stream, connection) => { void this.readConsensusStream(stream, connection) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS
    })
    this.mempoolLinks = new DirectLinks(this.c.net, mempoolProtocol(this.chainId), { maxFrameBytes: MAX_TX_BATCH_MESSAGE_BYTES, maxQueue: MAX_MEMPOOL_STREAM_QUEUE, retryMs: MEMPOOL_RETRY_MS })
    this.consensusLinks = new DirectLinks(this.c.net, consensusProtocol(this.chainId), { maxFrameBytes: MAX_PROPOSAL_MESSAGE_BYTES, maxQueue: MAX_CONSENSUS_STREAM_QUEUE, retryMs: MEMPOOL_RETRY_MS })
    this.syncTimer = setInterval(() => {
      // Only a node that has committed nothing for a while asks its peers (CometBFT's block sync
      // likewise runs only while behind): one that keeps committing is at the head, and a block
      // or message from further ahead starts a sync at once.
      if (performance.now() - this.lastProgress < SYNC_INTERVAL_MS) return
      void this.syncFromPeers()
      // Waiting on votes with no timer armed (L34/L47 need 2f+1 first): nothing else resends ours.
      if (this.consensus != null) this.regossip()
    }, SYNC_INTERVAL_MS)
    this.syncTimer.unref?.()
    await this.startHeight()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.heightStarted = 0
    clearInterval(this.syncTimer)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.stopWaitingForTxs()
    this.flushOutbox()
    if (this.inboxTimer != null) clearImmediate(this.inboxTimer)
    this.inboxTimer = undefined
    this.inbox = []
    this.inboxHead = 0
    await this.busy.catch(() => {})
    await this.c.net.unhandle(SYNC_PROTOCOL)
    await this.c.net.unhandle(mempoolProtocol(this.chainId))
    await this.c.net.unhandle(consensusProtocol(this.chainId))
    await Promise.all([this.mempoolLinks?.close(), this.consensusLinks?.close()])
    this.mempoolLinks = undefined
    this.consensusLinks = undefined
  }

  /** Runs one step at a time: consensus input, commits and syncs never interleave. */
  private serial (fn: () => Promise<void>): Promise<void> {
    const next = this.busy.then(fn, fn)
    this.busy = next.catch(err => { log.error('ledger step failed: %s', (err as Error).message) })
    return next
  }

  private async startHeight (): Promise<void> {
    // Once per height: a commit timer that fires after a later block came by sync or gossip
    // would otherwise start the same height again (restoring our own WAL, losing our proposal).
    if (this.heightStarted === this.state.height + 1) return
    this.heightStarted = this.state.height + 1
    this.proposed.clear()
    this.executed.clear()
    this.voteBytes.clear()
    this.proposalBytes.clear()
    this.waited.clear()
    if (!this.isValidator) { this.consensus = undefined; return }
    const height = this.state.height + 1
    const wal = await this.c.chain.getWal() as { height?: number, snapshot?: unknown } | undefined
    const restored = wal?.height === height && wal.snapshot != null
    this.consensus = restored
      ? Consensus.fromJSON(wal.snapshot as never)
      : new Consensus({ self: this.c.did, validators: this.state.validators, height })
    // A restored machine re-arms what the crash lost and gossips its own messages again (the same
    // signed bytes: Ed25519 signatures are deterministic).
    await this.run(restored ? [...this.consensus.start(), ...this.consensus.ownMessages()] : this.consensus.start())
    // Messages that arrived early for this height.
    const early = this.early.splice(0)
    for (const bytes of early) await this.onConsensusMessage(bytes)
  }

  private async run (actions: Action[]): Promise<void> {
    for (const action of actions) await this.act(action)
  }

  /** Keeps the result of executing a block on top of the current state, for the commit. */
  private remember (hash: string, result: { state: LedgerState, receipts: Receipt[] }): void {
    if (this.executed.size >= MAX_EXECUTED_BLOCKS) this.executed.delete(this.executed.keys().next().value as string)
    this.executed.set(hash, { parent: this.state, ...result })
  }

  /** The result of executing `block` on the current state: remembered, or computed (checkBlock) now. */
  private execution (hash: string, block: Block): { state: LedgerState, receipts: Receipt[] } {
    const known = this.executed.get(hash)
    if (known != null && known.parent === this.state) return known
    const result = checkBlock(this.state, block, { decode: this.txCache.decode })
    this.remember(hash, result)
    return result
  }

  private async act (action: Action): Promise<void> {
    const consensus = this.consensus
    if (consensus == null) return
    switch (action.type) {
      case 'need-value': {
        const slot = `${action.height}/${action.round}`
        if (this.mempool.size < PROPOSE_AT_ONCE_TXS && !this.waited.has(slot)) {
          this.waited.add(slot)
          // Few transactions to order: wait a little for more rather than make a block per
          // transaction (each height costs every validator the same messages whatever it holds),
          // and with none at all wait longer, but always less than the others' propose timeout.
          const build = (): void => {
            if (this.waitingForTxs !== waiting) return
            this.stopWaitingForTxs()
            void this.serial(async () => {
              if (this.consensus !== consensus || !this.started) return
              await this.act(action)
            })
          }
          const waiting: NonNullable<LedgerService['waitingForTxs']> = {
            timer: setTimeout(build, EMPTY_BLOCK_WAIT_MS),
            // On each new transaction: a full enough block now, or one BLOCK_FILL_WAIT_MS after the first.
            onTx: () => {
              if (this.mempool.size >= PROPOSE_AT_ONCE_TXS) build()
              else if (waiting.fill == null) waiting.fill = setTimeout(build, BLOCK_FILL_WAIT_MS)
            }
          }
          this.waitingForTxs = waiting
          if (this.mempool.size > 0) waiting.onTx()
          return
        }
        const t0 = performance.now()
        const txs = this.mempool.select(s => this.nextNonce(s), MAX_TXS_PER_BLOCK, MAX_BLOCK_TX_BYTES)
        const built = buildBlock(this.state, txs, this.c.did, Math.max(Date.now(), this.lastTime() + 1), { decode: this.txCache.decode })
        // Left out: a nonce already used is stale for good; the rest waits for the post-commit recheck.
        for (const s of built.skipped) if (s.error === 'NonceReusedError') this.mempool.remove(s.tx)
        const hash = blockHash(built.block.header)
        this.proposed.set(hash, built.block)
        this.remember(hash, built)
        log('built block %d/%d: %d txs (%d left out) in %d ms', action.height, action.round, built.block.txs.length, built.skipped.length, Math.round(performance.now() - t0))
        await this.run(consensus.step({ type: 'value-ready', height: action.height, round: action.round, value: hash }))
        return
      }
      case 'propose': {
        const block = this.proposed.get(action.proposal.value)
        if (block == null) return
        await this.c.chain.putWal({ height: consensus.state.height, snapshot: consensus.toJSON() })
        const bytes = await signProposal(this.c.key, { height: action.proposal.height, round: action.proposal.round, polRound: action.proposal.polRound, value: action.proposal.value }, block)
        // Our state machine holds its own proposal already, and we executed the block building it:
        // only the others need it.
        this.keepProposal(`${action.proposal.round}/${action.proposal.value}`, bytes)
        this.sendConsensus(bytes)
        return
      }
      case 'vote': {
        await this.c.chain.putWal({ height: consensus.state.height, snapshot: consensus.toJSON() })
        const bytes = await signVote(this.c.key, { type: action.vote.type, height: action.vote.height, round: action.vote.round, value: action.vote.value })
        this.sendConsensus(bytes)
        // Our own vote, just signed, goes straight to our state machine: no decoding and
        // verifying it as if a peer had sent it.
        if (this.consensus !== consensus || action.vote.height !== this.state.height + 1) return
        if (this.voteBytes.size < MAX_VOTES_KEPT) this.voteBytes.set(voteKey(action.vote), bytes)
        await this.run(consensus.step({ type: 'vote', vote: { ...action.vote } }))
        return
      }
      case 'schedule-timeout': {
        const t = setTimeout(() => {
          this.timers.delete(t)
          void this.serial(async () => {
            if (this.consensus !== consensus || !this.started) return
            // A round that timed out may have lost messages on the way: send ours of this height again.
            this.regossip()
            await this.run(consensus.step({ type: 'timeout', step: action.step, height: action.height, round: action.round }))
          })
        }, action.ms)
        this.timers.add(t)
        return
      }
      case 'commit': {
        const block = this.proposed.get(action.value)
        if (block == null) { log.error('decided on a block we do not hold: %s', action.value); return }
        const commit = action.precommits.map(v => this.voteBytes.get(voteKey(v))).filter((b): b is Uint8Array => b != null)
        // Our consensus decided on these precommits, each verified as it arrived: with all their
        // bytes held, the commit need not be checked again.
        await this.commitBlock({ block, commit }, commit.length === action.precommits.length)
        // For followers: one copy per block, from its proposer (every validator sending its own
        // copy multiplied the largest message on the wire). A follower that misses it syncs.
        if (block.header.proposer === this.c.did) void this.c.publish(this.topic('blocks'), dagCbor.encode({ block: encodeBlock(block), commit })).catch(() => {})
        return
      }
      case 'need-proposal':
        // Block sync fetches the block once the others commit it.
        log('missing the proposal for %s at %d/%d', action.value, action.height, action.round)
        return
      case 'evidence': {
        const a = this.voteBytes.get(voteKey(action.a))
        const b = this.voteBytes.get(voteKey(action.b))
        if (a != null && b != null) {
          // Every validator learns of it, including those the equivocator showed only one vote.
          if (await this.c.chain.putEvidence(a, b)) void this.c.publish(this.topic('consensus'), encodeEvidenceMessage(a, b)).catch(() => {})
        }
        this.safeDispatchEvent('ledger:evidence', { detail: { validator: action.a.validator, height: action.a.height, round: action.a.round } })
      }
    }
  }

  /**
   * Evidence of a double vote from a peer: kept (once) when the equivocator is one of our
   * validators and the height is recent (MAX_EVIDENCE_AGE_HEIGHTS); InvalidEvidenceError otherwise.
   */
  private async takeEvidence (e: DoubleVote): Promise<void> {
    if (!this.validates(e.validator)) throw new InvalidEvidenceError(`${e.validator} is not a validator`)
    if (!evidenceHeightKept(e.height, this.state.height)) throw new InvalidEvidenceError(`evidence for height ${e.height} is not within ${MAX_EVIDENCE_AGE_HEIGHTS} heights of ${this.state.height}`)
    if (!await this.c.chain.putEvidence(e.a.bytes, e.b.bytes)) return
    log('evidence of a double %s by %s at %d/%d', e.type, e.validator, e.height, e.round)
    this.safeDispatchEvent('ledger:evidence', { detail: { validator: e.validator, height: e.height, round: e.round } })
  }

  /**
   * Sends again every vote and proposal we hold of this height, ours and the others' (on a round
   * timeout, and while no block commits). Liveness needs every message a correct validator took to
   * reach every correct validator: over direct links nothing is forwarded, so a message lost with a
   * failed link, or shown by a byzantine validator to some only, gets there this way (CometBFT's
   * gossip routines likewise keep sending peers the votes they lack).
   */
  private regossip (): void {
    for (const bytes of this.proposalBytes.values()) this.sendConsensus(bytes)
    for (const bytes of this.voteBytes.values()) this.sendConsensus(bytes)
  }

  private keepProposal (key: string, bytes: Uint8Array): void {
    if (this.proposalBytes.size < MAX_PROPOSALS_KEPT) this.proposalBytes.set(key, bytes)
  }

  /**
   * Sends one of our consensus messages to the other validators: straight to each over its
   * consensus stream, and over GossipSub as well unless every one of them has an open stream.
   */
  private sendConsensus (bytes: Uint8Array): void {
    const links = this.consensusLinks
    let everyone = links != null && this.c.didOf != null
    if (everyone) {
      const peersOf = new Map<string, PeerId[]>()
      for (const peer of this.c.net.getPeers()) {
        const did = this.c.didOf!(peer.toString())
        if (did != null) peersOf.set(did, [...(peersOf.get(did) ?? []), peer])
      }
      for (const v of this.state.validators) {
        if (v.id === this.c.did) continue
        let open = false
        for (const peer of peersOf.get(v.id) ?? []) if (links!.send(peer, bytes) === 'open') open = true
        if (!open) everyone = false
      }
    }
    if (!everyone) void this.c.publish(this.topic('consensus'), bytes).catch(() => {})
  }

  /**
   * Reads a validator's consensus stream: length-prefixed messages, each taken in turn. Only a
   * peer bound to one of our validators may send here (others gossip); an oversized frame, or a
   * stream from anyone else, is ended.
   */
  private async readConsensusStream (stream: Stream, connection: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_PROPOSAL_MESSAGE_BYTES })
    try {
      const did = this.c.didOf?.(connection.remotePeer.toString())
      if (did == null || !this.validates(did)) throw new NotValidatorError(`peer ${connection.remotePeer.toString()} is not bound to a validator`)
      while (true) {
        const frame = (await lp.read()).subarray()
        if (!this.started) break
        this.consensusReceived.direct++
        // One message at a time: the next is read once this one is taken in.
        await this.serial(async () => { await this.onConsensusMessage(frame) })
      }
    } catch (err) {
      stream.abort(err as Error)
      return
    }
    stream.abort(new Error('ledger stopped'))
  }

  private lastTime (): number {
    return this.state.height === 0 ? this.genesis.time : this.lastBlockTime
  }

  private lastBlockTime = 0
  /** performance.now() of our last commit (or of start): see the sync timer. */
  private lastProgress = -Infinity

  private async onConsensusMessage (bytes: Uint8Array): Promise<void> {
    const consensus = this.consensus
    if (consensus == null && this.isValidator && this.started) {
      // Between a commit and the next height's start: keep the message for that height.
      if (this.early.length < 1000) this.early.push(bytes)
      return
    }
    let input: Parameters<Consensus['step']>[0] | undefined
    let height: number
    try {
      const msg = decodeConsensusMessage(bytes)
      if (msg.kind === 'evidence') {
        await this.takeEvidence(msg.evidence)
        return
      }
      if (msg.kind === 'vote') {
        const vote = msg.vote
        height = vote.height
        const { bytes: _bytes, ...plain } = vote
        // Kept (for the commit, evidence and sending again) only from the height's validators.
        if (height === this.state.height + 1 && this.voteBytes.size < MAX_VOTES_KEPT && this.validates(plain.validator)) this.voteBytes.set(voteKey(plain), bytes)
        input = { type: 'vote', vote: plain }
      } else {
        // The block beside the proposal is the one it names (decodeConsensusMessage checked), so
        // what is wrong with it from here on is the proposer's doing.
        const p = msg.proposal
        height = p.height
        if (consensus != null && height === this.state.height + 1) {
          // Only the scheduled proposer's proposals count (the consensus drops others): execute no other.
          if (p.proposer !== proposer(this.state.validators, p.height, p.round)) return
          let valid = p.blockValue.header.proposer === p.proposer
          if (valid) {
            try {
              const t0 = performance.now()
              this.execution(p.value, p.blockValue)
              log('checked proposal %d/%d: %d txs, %d bytes in %d ms', p.height, p.round, p.blockValue.txs.length, bytes.length, Math.round(performance.now() - t0))
            } catch (err) {
              log('invalid block proposed by %s: %s', p.proposer, (err as Error).message)
              valid = false
            }
          }
          if (valid) this.proposed.set(p.value, p.blockValue)
          this.keepProposal(`${p.round}/${p.value}`, bytes)
          input = { type: 'proposal', proposal: { height: p.height, round: p.round, polRound: p.polRound, value: p.value, proposer: p.proposer }, valid }
        }
      }
    } catch (err) {
      log('bad consensus message: %s', (err as Error).message)
      return
    }
    if (height > this.state.height + 1) {
      if (height <= this.state.height + 2 && this.early.length < 1000) this.early.push(bytes)
      return
    }
    if (consensus == null || input == null || height !== this.state.height + 1) return
    await this.run(consensus.step(input))
  }

  /**
   * Applies a committed block: check (or reuse the check made at proposal time), store (synced),
   * then move on. `decided`: the commit is our own consensus's decision, its votes verified on arrival.
   */
  private async commitBlock (stored: StoredBlock, decided = false): Promise<void> {
    if (stored.block.header.height !== this.state.height + 1) return
    if (!decided) verifyCommit(stored.block, stored.commit, this.state.validators)
    const hash = blockHash(stored.block.header)
    const { state, receipts } = this.execution(hash, stored.block)
    await this.c.chain.putBlock(stored, receipts)
    for (const r of receipts) this.txCache.forget(r.tx)
    log('committed block %d: %d txs; mempool %d; cache %d hits %d misses', stored.block.header.height, stored.block.txs.length, this.mempool.size, this.txCache.hits, this.txCache.misses)
    this.state = state
    this.executed.clear()
    this.lastBlockTime = stored.block.header.time
    this.lastProgress = performance.now()
    this.mempool.prune(s => this.nextNonce(s))
    for (const tx of this.mempool.recheck(s => this.nextNonce(s), s => this.balanceOf(s))) {
      this.reject(tx.id, { name: 'InsufficientFundsError', message: `balance ${this.balanceOf(tx.sender)} cannot pay the fee of ${tx.sender}'s next transaction` })
    }
    this.safeDispatchEvent('ledger:block', { detail: { height: state.height, hash, txs: stored.block.txs.length, stateRoot: stored.block.header.stateRoot } })
    for (const r of receipts) this.safeDispatchEvent('ledger:receipt', { detail: r })
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.stopWaitingForTxs()
    this.consensus = undefined
    const t = setTimeout(() => {
      this.timers.delete(t)
      void this.serial(async () => { if (this.started) await this.startHeight() })
    }, COMMIT_PAUSE_MS)
    this.timers.add(t)
  }

  /** A gossip message on one of our topics. */
  onGossip (topic: string, data: Uint8Array): void {
    if (topic === this.topic('consensus')) {
      this.consensusReceived.gossip++
      void this.serial(async () => { await this.onConsensusMessage(data) })
    }
    else if (topic === this.topic('txs')) {
      this.takeBatch(data)
    } else if (topic === this.topic('blocks')) {
      void this.serial(async () => {
        try {
          const { block, commit } = dagCbor.decode(data) as { block: Uint8Array, commit: Uint8Array[] }
          const b = decodeBlock(block)
          if (b.header.height === this.state.height + 1) await this.commitBlock({ block: b, commit })
          else if (b.header.height > this.state.height + 1) void this.syncFromPeers()
        } catch (err) {
          log('bad block message: %s', (err as Error).message)
        }
      })
    }
  }

  /** A batch of transactions from a peer (gossiped, or on a mempool stream) into the inbox; false when refused. */
  private takeBatch (data: Uint8Array): boolean {
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
    for (const t of txs) this.inbox.push(t)
    this.inboxTimer ??= setImmediate(() => { this.checkInbox() })
    return true
  }

  /** Reads a peer's mempool stream: length-prefixed batches, each into the inbox; a malformed one ends the stream. */
  private async readMempoolStream (stream: Stream): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_TX_BATCH_MESSAGE_BYTES })
    try {
      while (this.started) {
        const frame = (await lp.read()).subarray()
        if (!this.takeBatch(frame)) throw new InvalidTxBatchError('not a transaction batch')
      }
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /** Sends a batch straight to every connected peer that speaks our chain's mempool protocol; returns how many open streams took it. */
  private sendBatchDirect (batch: Uint8Array): number {
    const links = this.mempoolLinks
    if (links == null) return 0
    let queued = 0
    // Counted only on an open stream: while one is being dialled (and may be refused), or when a
    // peer's queue is full (it gets the transactions in the proposal), GossipSub carries the batch too.
    for (const peer of this.c.net.getPeers()) if (links.send(peer, batch) === 'open') queued++
    return queued
  }

  /** Gossiped transactions waiting to be checked. */
  get inboxSize (): number { return this.inbox.length - this.inboxHead }

  /** Checks waiting gossiped transactions into the mempool for one slice, then yields (TX_CHECK_SLICE_MS). */
  private checkInbox (): void {
    this.inboxTimer = undefined
    if (!this.started) return
    const until = performance.now() + TX_CHECK_SLICE_MS
    let added = 0
    while (this.inboxHead < this.inbox.length) {
      const bytes = this.inbox[this.inboxHead++]
      try {
        this.mempool.add(bytes, s => this.nextNonce(s), s => this.balanceOf(s))
        added++
      } catch {}
      if (performance.now() >= until) break
    }
    if (this.inboxHead === this.inbox.length) {
      this.inbox = []
      this.inboxHead = 0
    } else {
      if (this.inboxHead > 4096) { this.inbox = this.inbox.slice(this.inboxHead); this.inboxHead = 0 }
      this.inboxTimer = setImmediate(() => { this.checkInbox() })
    }
    if (added > 0) this.waitingForTxs?.onTx()
  }

  private stopWaitingForTxs (): void {
    if (this.waitingForTxs == null) return
    clearTimeout(this.waitingForTxs.timer)
    clearTimeout(this.waitingForTxs.fill)
    this.waitingForTxs = undefined
  }

  /** Queues one of our transactions for the next gossiped batch. */
  private gossipTx (bytes: Uint8Array): void {
    if (this.outbox.length >= MAX_TX_BATCH_TXS || this.outboxBytes + bytes.length > MAX_TX_BATCH_BYTES) this.flushOutbox()
    this.outbox.push(bytes)
    this.outboxBytes += bytes.length
    if (this.outboxTimer == null) {
      this.outboxTimer = setTimeout(() => { this.flushOutbox() }, TX_BATCH_INTERVAL_MS)
      this.outboxTimer.unref?.()
    }
  }

  /** Publishes the queued transactions as one batch. */
  private flushOutbox (): void {
    clearTimeout(this.outboxTimer)
    this.outboxTimer = undefined
    if (this.outbox.length === 0) return
    const batch = encodeTxBatch(this.outbox)
    this.outbox = []
    this.outboxBytes = 0
    // A validator's neighbours take its batches straight (they do not forward them); with none
    // that speaks the protocol yet, and for peers that are not validators, GossipSub carries them.
    if (this.isValidator && this.started && this.sendBatchDirect(batch) > 0) return
    void this.c.publish(this.topic('txs'), batch).catch(() => {})
  }

  /** Remembers why a transaction was refused, for txStatus (the last MAX_REJECTED_KEPT). */
  private reject (id: string, err: { name: string, message: string }): void {
    this.rejected.delete(id)
    this.rejected.set(id, { error: err.name, message: err.message })
    if (this.rejected.size > MAX_REJECTED_KEPT) this.rejected.delete(this.rejected.keys().next().value as string)
  }

  // -- queries and transactions ---------------------------------------------------------------

  nextNonce (sender: string): number {
    return this.state.accounts.get(sender)?.nonce ?? 0
  }

  private balanceOf (sender: string): bigint {
    return this.state.accounts.get(sender)?.balance ?? 0n
  }

  /** The next nonce for a new transaction of ours: past any waiting in the mempool. */
  private pendingNonce (sender: string): number {
    let n = this.nextNonce(sender)
    while (this.mempool.hasNonce(sender, n)) n++
    return n
  }

  /** Signs a transaction of ours with the next nonce and submits it. */
  async submitOwn (op: TxOp, fee = 1n): Promise<Tx> {
    const tx = await signTx(this.c.key, { chain: this.chainId, nonce: this.pendingNonce(this.c.did), fee, ...op } as never)
    await this.submit(tx.bytes)
    return tx
  }

  /** On a devnet: a faucet transfer to `to`, signed with the chain's public faucet key. */
  async faucet (to: string, amount = FAUCET_GRANT): Promise<Tx> {
    const faucet = faucetDid(this.chainId)
    if (!this.state.accounts.has(faucet)) throw new NotValidatorError('this chain has no faucet (only devnets do)')
    let nonce = this.nextNonce(faucet)
    while (this.mempool.hasNonce(faucet, nonce)) nonce++
    const tx = await signTx(faucetKey(this.chainId), { chain: this.chainId, nonce, fee: 1n, kind: 'transfer', to, amount })
    await this.submit(tx.bytes)
    return tx
  }

  /** Adds a signed transaction to the mempool and gossips it (batched). Throws the mempool's named errors. */
  async submit (bytes: Uint8Array): Promise<Tx> {
    let tx: Tx
    try {
      tx = this.mempool.add(bytes, s => this.nextNonce(s), s => this.balanceOf(s))
    } catch (err) {
      // Its id is the CID of its bytes: no second decode (nor a signature check the refusal spared).
      if (bytes instanceof Uint8Array && bytes.length <= MAX_TX_BYTES) this.reject(recordId(bytes), err as Error)
      throw err
    }
    this.gossipTx(bytes)
    this.waitingForTxs?.onTx()
    return tx
  }

  async txStatus (id: string): Promise<TxStatus> {
    const receipt = await this.c.chain.receipt(id)
    if (receipt != null) return receipt.ok ? { status: 'committed', height: receipt.height, receipt } : { status: 'rejected', error: receipt.error ?? 'Error', message: receipt.message ?? '' }
    if (this.mempool.has(id)) return { status: 'pending' }
    const r = this.rejected.get(id)
    return r != null ? { status: 'rejected', ...r } : { status: 'unknown' }
  }

  balance (did: string): { balance: bigint, nonce: number, stake: bigint } {
    return this.state.accounts.get(did) ?? { balance: 0n, nonce: 0, stake: 0n }
  }

  assetsOf (did: string): Array<{ id: string, name: string, content: string, owner: string }> {
    return [...this.state.assets.values()].filter(a => a.owner === did)
  }

  parcelsOf (did: string): Array<{ id: string, space: string, x: number, y: number, w: number, h: number, owner: string }> {
    return [...this.state.parcels.values()].filter(p => p.owner === did)
  }

  /** The land parcels of one space (spaces ask this to decide who may build where). */
  parcelsIn (space: string): Array<{ id: string, space: string, x: number, y: number, w: number, h: number, owner: string }> {
    return [...this.state.parcels.values()].filter(p => p.space === space)
  }

  /** The current head with a proof of one key against its state root. */
  prove (key: string): { height: number, stateRoot: string, proof: StateProof } {
    return { height: this.state.height, stateRoot: stateRoot(this.state), proof: proveKey(this.state, key) }
  }

  async block (height: number): Promise<StoredBlock | undefined> {
    return await this.c.chain.getBlock(height)
  }

  /** Stored evidence of double votes: who signed two different votes for one (height, round, type). */
  async evidence (): Promise<Array<{ validator: string, height: number, round: number, type: 'prevote' | 'precommit', values: Array<string | null> }>> {
    return (await this.c.chain.evidence()).map(([a, b]) => {
      const va = decodeVote(a)
      const vb = decodeVote(b)
      return { validator: va.validator, height: va.height, round: va.round, type: va.type, values: [va.value, vb.value] }
    })
  }

  // -- sync ---------------------------------------------------------------------------------

  private async serveSync (stream: Stream, _connection: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: 1024 })
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS * 2)
    try {
      const req = dagCbor.decode((await lp.read({ signal })).subarray()) as { from?: unknown }
      if (typeof req.from !== 'number' || !Number.isSafeInteger(req.from) || req.from < 1) throw new Error('from must be a positive integer')
      const out = lpStream(stream, { maxDataLength: MAX_BLOCK_BYTES * 2 })
      let n = 0
      for (let h = req.from; h <= this.state.height && n < MAX_SYNC_BLOCKS; h++, n++) {
        const stored = await this.c.chain.getBlock(h)
        if (stored == null) break
        await out.write(dagCbor.encode({ block: encodeBlock(stored.block), commit: stored.commit }), { signal })
      }
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  private syncing = false

  /** Asks connected peers for blocks past our head, checking each against its commit. */
  async syncFromPeers (): Promise<void> {
    if (this.syncing || !this.started) return
    this.syncing = true
    try {
      for (const peer of this.c.net.getPeers()) {
        const got = await this.syncWith(peer).catch(() => 0)
        if (got > 0) return
      }
    } finally {
      this.syncing = false
    }
  }

  private async syncWith (peer: PeerId): Promise<number> {
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS * 2)
    const stream = await this.c.net.dialProtocol(peer, SYNC_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: MAX_BLOCK_BYTES * 2 })
    let got = 0
    try {
      await lp.write(dagCbor.encode({ from: this.state.height + 1 }), { signal })
      while (true) {
        let frame: Uint8Array
        try { frame = (await lp.read({ signal })).subarray() } catch { break }
        const { block, commit } = dagCbor.decode(frame) as { block: Uint8Array, commit: Uint8Array[] }
        const b = decodeBlock(block)
        await this.serial(async () => {
          if (b.header.height === this.state.height + 1) { await this.commitBlock({ block: b, commit }); got++ }
        })
      }
    } finally {
      await stream.close().catch(() => {})
    }
    return got
  }
}
