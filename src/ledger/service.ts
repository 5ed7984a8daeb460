/**
 * The ledger service: runs the chain on the peer network. Validators drive the consensus state
 * machine (consensus.ts) with proposals and votes from the consensus channel (consensus-channel.ts);
 * every node, validator or not, applies committed blocks (checked against their commit) to the
 * pure state (state.ts), keeps a mempool of transactions from the transaction channel
 * (tx-channel.ts), and catches up by fetching blocks by height from peers (sync.ts). It reaches
 * the network only through the ports in its components (index.ts).
 *
 * Safety across crashes: the consensus state is written (synced) to a write-ahead record before
 * any proposal or vote leaves the node, with the block that proposal or vote commits us to (so a
 * restart that restores a decision holds the block it decided), and a committed block is written
 * (synced) before the node moves to the next height, so kill -9 at any moment loses no committed
 * block and cannot make a validator sign two different messages for one height, round and step.
 * A transaction answered "pending" was written first (pending.ts) and is submitted again after a
 * restart. A write that fails halts the ledger until writes succeed again (halt.ts).
 *
 * Work done once (the measured costs: an Ed25519 verify is ~110 us, executing a block of 1,000
 * transfers a few ms once verified): every transaction's signature is checked once per node, by a
 * VerifiedTxCache shared by the mempool and every block check; a block is executed once per node
 * at a height (the proposer keeps what it computed while building, the others what they computed
 * checking the proposal) and the commit reuses that result; transactions travel in batches; and
 * the next height starts as soon as a block is committed (CometBFT's skip_timeout_commit), its
 * proposer waiting briefly only while it holds few transactions (PROPOSE_AT_ONCE_TXS,
 * BLOCK_FILL_WAIT_MS).
 */
import { logger } from '@libp2p/logger'
import {
  decodeConsensusMessage, encodeEvidenceMessage, signProposal, signVote, verifyCommit, walBlockKey, type StoredBlock
} from './chain.ts'
import { ConsensusChannel } from './consensus-channel.ts'
import { Consensus, proposer, type Action } from './consensus.ts'
import { PERSIST_RETRY_MS } from './halt.ts'
import type { LedgerComponents, LedgerInit, LedgerStatus } from './types.ts'
import { MAX_BLOCK_TX_BYTES, MAX_TXS_PER_BLOCK, StaleNonceError } from './mempool.ts'
import { blockHash, buildBlock, checkBlock, type Block } from './state.ts'
import { Executions } from './executions.ts'
import { BlockSync, decodeSyncFrame, encodeSyncFrame, SYNC_INTERVAL_MS } from './sync.ts'
import { TxChannel } from './tx-channel.ts'
import { LedgerIntake } from './intake.ts'
import { HeightRecorder } from './height-record.ts'
import { ledgerTopic } from './wire.ts'

const log = logger('peerverse:ledger')

export { MAX_BLOCK_TX_BYTES, MAX_TXS_PER_BLOCK } from './mempool.ts'
/** Pause after a commit before the next height starts (CometBFT's timeout_commit); 0 starts it at once. */
export const COMMIT_PAUSE_MS = 0
/** A proposer with an empty mempool waits this long for a transaction before proposing an empty block (below the propose timeout). */
export const EMPTY_BLOCK_WAIT_MS = 2_000
/** A proposer holding at least this many transactions proposes at once; with fewer it waits (see BLOCK_FILL_WAIT_MS). */
export const PROPOSE_AT_ONCE_TXS = 256
/** A proposer holding fewer than PROPOSE_AT_ONCE_TXS waits this long after the first for more (so a trickle is not a block per transaction). */
export const BLOCK_FILL_WAIT_MS = 100
export { MAX_REJECTED_KEPT } from './pending.ts'
/** Our pending transactions (answered "pending", not yet committed or refused) are sent again this often. */
export const PENDING_RESEND_MS = 10_000
/** Consensus messages for the next heights kept to replay when we get there. */
export const MAX_EARLY_MESSAGES = 1000

export type { TxStatus } from './view.ts'

type Settings = Required<Pick<LedgerInit, 'commitPauseMs' | 'emptyBlockWaitMs' | 'blockFillWaitMs' | 'syncIntervalMs'>> & Pick<LedgerInit, 'timeouts'>

export class LedgerService extends LedgerIntake {
  private readonly c: LedgerComponents
  private readonly settings: Settings
  private readonly txs: TxChannel
  private readonly messages: ConsensusChannel
  private readonly sync: BlockSync
  private consensus?: Consensus
  /** Blocks proposed at the current height, by hash. */
  private readonly proposed = new Map<string, Block>()
  /** Blocks executed on top of `state` at the current height, by hash. */
  private readonly executed: Executions
  /** Messages for the next heights, replayed when we get there (bounded by MAX_EARLY_MESSAGES). */
  private readonly early: Uint8Array[] = []
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  /** Our proposal waiting for transactions (see EMPTY_BLOCK_WAIT_MS). */
  private waitingForTxs?: { timer: ReturnType<typeof setTimeout>, fill?: ReturnType<typeof setTimeout>, onTx: () => void }
  /** (height/round)s whose proposal has waited for transactions already. */
  private readonly waited = new Set<string>()
  /** Hashes of the blocks on disk beside the write-ahead record (removed with the next committed block). */
  private readonly walBlocks = new Set<string>()
  /** Peers' transactions the mempool refused, by error name. */
  private readonly gossipRefused: Record<string, number> = {}
  private resendTimer?: ReturnType<typeof setInterval>
  private unsubscribeBlocks?: () => void
  private syncTimer?: ReturnType<typeof setInterval>
  /** The height the consensus was last started for. */
  private heightStarted = 0
  private started = false
  private busy: Promise<void> = Promise.resolve()
  private lastBlockTime = 0
  /** performance.now() of our last commit (or of start): see the sync timer. */
  private lastProgress = -Infinity
  /** What happens at the height being decided (in each `ledger:block` event). */
  private readonly record = new HeightRecorder()

  constructor (init: LedgerInit, components: LedgerComponents) {
    super(components, init.persistRetryMs ?? PERSIST_RETRY_MS)
    this.c = components
    this.settings = {
      timeouts: init.timeouts,
      commitPauseMs: init.commitPauseMs ?? COMMIT_PAUSE_MS,
      emptyBlockWaitMs: init.emptyBlockWaitMs ?? EMPTY_BLOCK_WAIT_MS,
      blockFillWaitMs: init.blockFillWaitMs ?? BLOCK_FILL_WAIT_MS,
      syncIntervalMs: init.syncIntervalMs ?? SYNC_INTERVAL_MS
    }
    this.executed = new Executions(this.txCache.decode)
    const { gossip, protocols, onRejected } = components
    this.txs = new TxChannel({
      chain: this.chainId,
      gossip,
      protocols,
      onRejected,
      admit: bytes => {
        try {
          this.mempool.add(bytes, s => this.nextNonce(s), s => this.balanceOf(s))
        } catch (err) {
          // Dropped and counted (a skipped nonce among them: the gap may fill, and the sender's peer sends it again).
          const name = (err as Error).name
          this.gossipRefused[name] = (this.gossipRefused[name] ?? 0) + 1
          throw err
        }
      },
      onAdded: () => { this.waitingForTxs?.onTx() },
      direct: () => this.isValidator,
      batchIntervalMs: init.txBatchIntervalMs
    })
    this.messages = new ConsensusChannel({
      chain: this.chainId,
      self: components.identity.did,
      gossip,
      protocols,
      didOf: components.didOf,
      onRejected,
      validators: () => this.state.validators,
      onMessage: async bytes => { await this.serial(async () => { await this.onConsensusMessage(bytes) }) }
    })
    this.sync = new BlockSync({
      protocols,
      onRejected,
      chain: this.chain,
      height: () => this.state.height,
      commit: async stored => {
        let done = false
        await this.serial(async () => {
          if (stored.block.header.height === this.state.height + 1) { await this.commitBlock(stored); done = true }
        })
        return done
      }
    })
  }

  get isValidator (): boolean { return this.validates(this.c.identity.did) }

  /** The chain as this peer sees it: id, height, last block, validators, mempool size, messages received. */
  status (): LedgerStatus {
    return {
      chain: this.chainId,
      height: this.state.height,
      lastBlock: this.state.lastBlock,
      validators: this.state.validators,
      validator: this.isValidator,
      mempool: this.mempool.size,
      backlog: { ...this.mempool.backlog(s => this.nextNonce(s)), unchecked: this.txs.inboxSize, uncheckedWaitMs: Math.round(this.txs.inboxWaitMs()), waitMs: Math.round(this.mempool.oldestWait(s => this.nextNonce(s))) },
      consensusReceived: { ...this.consensusReceived },
      halted: this.halt.info == null ? null : { ...this.halt.info },
      pendingOwn: this.book.pendingCount,
      gossipRefused: { ...this.gossipRefused },
      heights: this.record.recent.map(r => ({ ...r }))
    }
  }

  /** Blocks executed and kept at the current height (at most MAX_EXECUTED_BLOCKS, executions.ts). */
  get executedBlocks (): number { return this.executed.size }

  /** Consensus messages taken in, by the way they came (for status and tests). */
  get consensusReceived (): { direct: number, gossip: number, copies: number } { return { ...this.messages.received } }

  /** Peers' transactions waiting to be checked. */
  get inboxSize (): number { return this.txs.inboxSize }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    // Replay committed blocks: the state is a pure function of them.
    for await (const stored of this.chain.blocks(1)) {
      const { state } = checkBlock(this.state, stored.block, { decode: this.txCache.decode })
      this.state = state
      this.noteSigners()
    }
    log('chain %s at height %d', this.chainId, this.state.height)
    const left = await this.book.load()
    this.unsubscribeBlocks = this.c.gossip.subscribe(ledgerTopic(this.chainId, 'blocks'), m => { this.onBlockGossip(m.data) })
    await this.messages.start()
    await this.sync.start()
    await this.txs.start()
    this.syncTimer = setInterval(() => {
      // Only a node that has committed nothing for a while asks its peers (CometBFT's block sync
      // likewise runs only while behind): one that keeps committing is at the head, and a block
      // or message from further ahead starts a sync at once.
      if (performance.now() - this.lastProgress < this.settings.syncIntervalMs || this.halt.halted) return
      void this.syncFromPeers()
      // Waiting on votes with no timer armed (L34/L47 need 2f+1 first): nothing else resends ours.
      if (this.consensus != null) this.messages.resend()
    }, this.settings.syncIntervalMs)
    this.syncTimer.unref?.()
    // What a crash left pending goes back in, in nonce order, and out to our peers again.
    if (left.length > 0) log('submitting again %d pending transactions of ours', left.length)
    this.resubmit(left)
    this.resendTimer = setInterval(() => { this.resubmit(this.book.pendingTxs()) }, PENDING_RESEND_MS)
    this.resendTimer.unref?.()
    await this.serial(async () => { await this.startHeight() }).catch(() => {})
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.heightStarted = 0
    clearInterval(this.syncTimer)
    clearInterval(this.resendTimer)
    this.halt.stop()
    this.clearTimers()
    this.unsubscribeBlocks?.()
    this.unsubscribeBlocks = undefined
    this.messages.halt()
    this.txs.halt()
    await this.busy.catch(() => {})
    // A step that was running may have armed a timer meanwhile.
    this.clearTimers()
    await this.sync.stop()
    await Promise.all([this.txs.close(), this.messages.close()])
  }

  /** Asks connected peers for blocks past our head, checking each against its commit. */
  async syncFromPeers (): Promise<void> {
    if (this.started) await this.sync.syncFromPeers()
  }

  /** Runs one step at a time: consensus input, commits and syncs never interleave. */
  private serial (fn: () => Promise<void>): Promise<void> {
    const queued = performance.now()
    const timed = async (): Promise<void> => {
      const t0 = performance.now()
      this.record.took('wait', t0 - queued)
      try { await fn() } finally { this.record.took('step', performance.now() - t0) }
    }
    const next = this.busy.then(timed, timed)
    this.busy = next.catch(err => { log.error('ledger step failed: %s', (err as Error).message) })
    return next
  }

  private async startHeight (): Promise<void> {
    // Halted: resume() starts the height once writes succeed again.
    if (this.halt.halted) return
    // Once per height: a commit timer that fires after a later block came by sync or gossip
    // would otherwise start the same height again (restoring our own WAL, losing our proposal).
    if (this.heightStarted === this.state.height + 1) return
    this.heightStarted = this.state.height + 1
    this.proposed.clear()
    this.executed.clear()
    this.messages.clearHeight()
    this.waited.clear()
    if (!this.isValidator) { this.consensus = undefined; return }
    const height = this.state.height + 1
    const wal = await this.chain.getWal() as { height?: number, snapshot?: unknown } | undefined
    const restored = wal?.height === height && wal.snapshot != null
    // The blocks our write-ahead record commits us to (ours proposed, or voted for): a restored
    // decision or proposal needs its block, which no one else may hold (a lone validator's).
    this.walBlocks.clear()
    for (const { hash, block } of await this.chain.walBlocks()) {
      this.walBlocks.add(hash)
      if (restored && block.header.height === height) this.proposed.set(hash, block)
    }
    this.consensus = restored
      ? Consensus.fromJSON(wal.snapshot as never)
      : new Consensus({ self: this.c.identity.did, validators: this.state.validators, height, timeouts: this.settings.timeouts })
    this.record.start(this.mempool.size)
    // A restored machine gossips its own messages again (the same signed bytes: Ed25519
    // signatures are deterministic; held again, our precommit can go in a restored commit), then
    // re-arms what the crash lost.
    await this.run(restored ? [...this.consensus.ownMessages(), ...this.consensus.start()] : this.consensus.start())
    // Messages that arrived early for this height.
    const early = this.early.splice(0)
    for (const bytes of early) await this.onConsensusMessage(bytes)
  }

  private async run (actions: Action[]): Promise<void> {
    for (const action of actions) await this.act(action)
  }

  /** Carries out one action of the consensus state machine. */
  private async act (action: Action): Promise<void> {
    const consensus = this.consensus
    if (consensus == null) return
    const { did, key } = this.c.identity
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
            timer: setTimeout(build, this.settings.emptyBlockWaitMs),
            // On each new transaction: a full enough block now, or one blockFillWaitMs after the first.
            onTx: () => {
              if (this.mempool.size >= PROPOSE_AT_ONCE_TXS) build()
              else if (waiting.fill == null) waiting.fill = setTimeout(build, this.settings.blockFillWaitMs)
            }
          }
          this.waitingForTxs = waiting
          if (this.mempool.size > 0) waiting.onTx()
          return
        }
        const t0 = performance.now()
        const txs = this.mempool.select(s => this.nextNonce(s), MAX_TXS_PER_BLOCK, MAX_BLOCK_TX_BYTES)
        const built = buildBlock(this.state, txs, did, Math.max(Date.now(), this.lastTime() + 1), { decode: this.txCache.decode })
        // Left out: a nonce already used is stale for good; the rest waits for the post-commit recheck.
        for (const s of built.skipped) {
          if (s.error !== 'NonceReusedError') continue
          this.mempool.remove(s.tx)
          this.book.reject(s.tx, new StaleNonceError('its nonce was used by a committed transaction'))
        }
        const hash = blockHash(built.block.header)
        this.proposed.set(hash, built.block)
        this.executed.remember(hash, this.state, built)
        this.record.proposal(hash, action.round, built.block.txs.length, 0, performance.now() - t0, true)
        log('built block %d/%d: %d txs (%d left out) in %d ms', action.height, action.round, built.block.txs.length, built.skipped.length, Math.round(performance.now() - t0))
        await this.run(consensus.step({ type: 'value-ready', height: action.height, round: action.round, value: hash }))
        return
      }
      case 'propose': {
        const block = this.proposed.get(action.proposal.value)
        if (block == null) return
        await this.putWal(consensus, action.proposal.value)
        const bytes = await signProposal(key, { height: action.proposal.height, round: action.proposal.round, polRound: action.proposal.polRound, value: action.proposal.value }, block)
        // Our state machine holds its own proposal already, and we executed the block building it:
        // only the others need it.
        this.messages.keepProposal(`${action.proposal.round}/${action.proposal.value}`, bytes)
        this.messages.send(bytes)
        return
      }
      case 'vote': {
        await this.putWal(consensus, action.vote.value)
        const bytes = await signVote(key, { type: action.vote.type, height: action.vote.height, round: action.vote.round, value: action.vote.value })
        this.messages.send(bytes)
        // Our own vote, just signed, goes straight to our state machine: no decoding and
        // verifying it as if a peer had sent it.
        if (this.consensus !== consensus || action.vote.height !== this.state.height + 1) return
        this.messages.keepVote(action.vote, bytes)
        await this.run(consensus.step({ type: 'vote', vote: { ...action.vote } }))
        return
      }
      case 'schedule-timeout': {
        const t = setTimeout(() => {
          this.timers.delete(t)
          void this.serial(async () => {
            if (this.consensus !== consensus || !this.started) return
            // A round that timed out may have lost messages on the way: send ours of this height again.
            this.messages.resend()
            const { round, step } = consensus.state
            if (round === action.round && (action.step === 'precommit' || step === action.step)) this.record.timeout(action.step)
            await this.run(consensus.step({ type: 'timeout', step: action.step, height: action.height, round: action.round }))
          })
        }, action.ms)
        this.timers.add(t)
        return
      }
      case 'commit': {
        const block = this.proposed.get(action.value)
        if (block == null) {
          // Restored from a record whose block is not on disk: the others commit it, and sync brings it.
          log.error('decided on a block we do not hold: %s; fetching it from peers', action.value)
          void this.syncFromPeers()
          return
        }
        const commit = action.precommits.map(v => this.messages.voteBytes(v)).filter((b): b is Uint8Array => b != null)
        // Our consensus decided on these precommits, each verified as it arrived: with all their
        // bytes held, the commit need not be checked again. Restored after a restart or a halt,
        // it may hold only ours: enough for a lone validator, and otherwise sync brings the block.
        const whole = commit.length === action.precommits.length
        if (!whole) {
          try {
            verifyCommit(block, commit, this.state.validators)
          } catch {
            log('decided %s without the precommits\' bytes; fetching the block from peers', action.value)
            void this.syncFromPeers()
            return
          }
        }
        await this.commitBlock({ block, commit }, true, action.round)
        // For followers: one copy per block, from its proposer (every validator sending its own
        // copy multiplied the largest message on the wire). A follower that misses it syncs.
        if (block.header.proposer === did) void this.c.gossip.publish(ledgerTopic(this.chainId, 'blocks'), encodeSyncFrame({ block, commit })).catch(() => {})
        return
      }
      case 'need-proposal':
        // Block sync fetches the block once the others commit it.
        log('missing the proposal for %s at %d/%d', action.value, action.height, action.round)
        return
      case 'evidence': {
        const a = this.messages.voteBytes(action.a)
        const b = this.messages.voteBytes(action.b)
        if (a != null && b != null) {
          // Every validator learns of it, including those the equivocator showed only one vote.
          if (await this.chain.putEvidence(a, b)) this.messages.gossip(encodeEvidenceMessage(a, b))
        }
        this.safeDispatchEvent('ledger:evidence', { detail: { validator: action.a.validator, height: action.a.height, round: action.a.round } })
      }
    }
  }

  private lastTime (): number {
    return this.state.height === 0 ? this.genesis.time : this.lastBlockTime
  }

  private async onConsensusMessage (bytes: Uint8Array): Promise<void> {
    const consensus = this.consensus
    if (consensus == null && this.isValidator && this.started) {
      // Between a commit and the next height's start: keep the message for that height.
      if (this.early.length < MAX_EARLY_MESSAGES) this.early.push(bytes)
      return
    }
    // A proposal sent again that we took in already (the same signed bytes).
    if (this.messages.isKeptProposal(bytes)) return
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
        if (height === this.state.height + 1 && this.validates(plain.validator)) this.messages.keepVote(plain, bytes)
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
              this.executed.of(p.value, p.blockValue, this.state)
              this.record.proposal(p.value, p.round, p.blockValue.txs.length, bytes.length, performance.now() - t0, false)
              log('checked proposal %d/%d: %d txs, %d bytes in %d ms', p.height, p.round, p.blockValue.txs.length, bytes.length, Math.round(performance.now() - t0))
            } catch (err) {
              log('invalid block proposed by %s: %s', p.proposer, (err as Error).message)
              valid = false
            }
          }
          if (valid) this.proposed.set(p.value, p.blockValue)
          this.messages.keepProposal(`${p.round}/${p.value}`, bytes)
          input = { type: 'proposal', proposal: { height: p.height, round: p.round, polRound: p.polRound, value: p.value, proposer: p.proposer }, valid }
        }
      }
    } catch (err) {
      log('bad consensus message: %s', (err as Error).message)
      return
    }
    if (height > this.state.height + 1) {
      if (height <= this.state.height + 2 && this.early.length < MAX_EARLY_MESSAGES) this.early.push(bytes)
      return
    }
    if (consensus == null || input == null || height !== this.state.height + 1) return
    await this.run(consensus.step(input))
  }

  /** A committed block with its commit, gossiped by its proposer on the blocks topic. */
  private onBlockGossip (data: Uint8Array): void {
    void this.serial(async () => {
      try {
        const stored = decodeSyncFrame(data)
        const height = stored.block.header.height
        if (height === this.state.height + 1) await this.commitBlock(stored)
        else if (height > this.state.height + 1) void this.syncFromPeers()
      } catch (err) {
        log('bad block message: %s', (err as Error).message)
      }
    })
  }

  /**
   * Applies a committed block: check (or reuse the check made at proposal time), store (synced),
   * then move on. `decided`: the commit is our own consensus's decision, its votes verified on arrival.
   */
  private async commitBlock (stored: StoredBlock, decided = false, round = this.consensus?.state.round ?? 0): Promise<void> {
    // Halted: nothing is applied that is not on disk (sync or gossip brings it again).
    if (stored.block.header.height !== this.state.height + 1 || this.halt.halted) return
    if (!decided) verifyCommit(stored.block, stored.commit, this.state.validators)
    const hash = blockHash(stored.block.header)
    const { state, receipts } = this.executed.of(hash, stored.block, this.state)
    const ids = receipts.map(r => r.tx)
    // In the block's own write: the write-ahead blocks of this height, and our pending records it settles.
    const stale = [...this.walBlocks].map(h => ({ type: 'del' as const, key: walBlockKey(h) }))
    const w0 = performance.now()
    await this.persist(async () => { await this.chain.putBlock(stored, receipts, [...stale, ...this.book.committedOps(ids)]) })
    this.record.took('write', performance.now() - w0)
    this.walBlocks.clear()
    this.book.committed(ids)
    for (const id of ids) this.txCache.committed(id)
    log('committed block %d: %d txs; mempool %d; cache %d hits %d misses', stored.block.header.height, stored.block.txs.length, this.mempool.size, this.txCache.hits, this.txCache.misses)
    this.state = state
    this.noteSigners()
    this.executed.clear()
    this.lastBlockTime = stored.block.header.time
    this.lastProgress = performance.now()
    this.settleMempool(new Set(ids))
    const record = this.record.commit(state.height, hash, round, stored.block.txs.length)
    this.safeDispatchEvent('ledger:block', { detail: { height: state.height, hash, txs: stored.block.txs.length, stateRoot: stored.block.header.stateRoot, record } })
    // Only our own receipts go out as events.
    const self = this.c.identity.did
    for (const r of receipts) if (r.sender === self) this.safeDispatchEvent('ledger:receipt', { detail: r })
    this.clearTimers()
    this.consensus = undefined
    const t = setTimeout(() => {
      this.timers.delete(t)
      void this.serial(async () => { if (this.started) await this.startHeight() })
    }, this.settings.commitPauseMs)
    this.timers.add(t)
  }

  /** Clears the height's timers and any wait of our proposal for transactions. */
  private clearTimers (): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.stopWaitingForTxs()
  }

  private stopWaitingForTxs (): void {
    if (this.waitingForTxs == null) return
    clearTimeout(this.waitingForTxs.timer)
    clearTimeout(this.waitingForTxs.fill)
    this.waitingForTxs = undefined
  }

  // -- halting on a failed write -----------------------------------------------------------

  /**
   * A write failed: drop what memory holds beyond the last write (the running height's machine,
   * its timers and what it was told since), so that nothing is signed or applied from it, and
   * try again by timer. Transactions are refused meanwhile.
   */
  protected enterHalt (err: unknown): void {
    if (!this.started) return
    if (this.halt.enter(err)) {
      log.error('cannot write; the ledger halts until it can: %s', (err as Error).message)
      this.safeDispatchEvent('ledger:halted', { detail: { ...this.halt.info! } })
    }
    this.clearTimers()
    this.consensus = undefined
    this.heightStarted = 0
    this.chain.forgetWal()
  }

  protected retryWrites (): void { void this.serial(async () => { await this.resume() }) }

  protected send (bytes: Uint8Array): void { this.txs.send(bytes) }

  protected unchecked (): { unchecked: number, uncheckedWaitMs: number } { return { unchecked: this.txs.inboxSize, uncheckedWaitMs: this.txs.inboxWaitMs() } }

  protected onTxs (): void { this.waitingForTxs?.onTx() }

  /** The retry timer: one small synced write; once it succeeds, the height starts again from what is on disk, as after a restart. */
  private async resume (): Promise<void> {
    if (!this.started || !this.halt.halted) return
    try {
      await this.chain.probe()
    } catch (err) {
      this.halt.enter(err)
      return
    }
    log('writes succeed again; the ledger resumes at height %d', this.state.height + 1)
    this.halt.clear()
    this.safeDispatchEvent('ledger:resumed', { detail: { height: this.state.height } })
    this.lastProgress = performance.now()
    this.resubmit(this.book.pendingTxs())
    await this.startHeight()
    void this.syncFromPeers()
  }

  /** Writes the write-ahead record with the block `value` names when it is not on disk yet. */
  private async putWal (consensus: Consensus, value: string | null): Promise<void> {
    const block = value == null || this.walBlocks.has(value) ? undefined : this.proposed.get(value)
    const w0 = performance.now()
    await this.persist(async () => { await this.chain.putWal({ height: consensus.state.height, snapshot: consensus.toJSON() }, block == null ? [] : [block]) })
    this.record.took('write', performance.now() - w0)
    if (block != null && value != null) this.walBlocks.add(value)
  }
}
