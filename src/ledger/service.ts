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
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { TypedEventEmitter } from 'main-event'
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { Network } from '../net/network.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS, PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import {
  ChainStore, decodeBlock, decodeProposal, decodeVote, encodeBlock, MAX_BLOCK_BYTES, signProposal, signVote, verifyCommit,
  type StoredBlock
} from './chain.ts'
import { Consensus, type Action } from './consensus.ts'
import { Mempool } from './mempool.ts'
import {
  blockHash, buildBlock, checkBlock, genesisState, proveKey, stateRoot, type Block, type Genesis, type LedgerState, type Receipt
} from './state.ts'
import { decodeTx, signTx, type Tx, type TxOp } from './tx.ts'
import type { StateProof } from './merkle.ts'
import { FAUCET_GRANT, faucetDid, faucetKey } from './genesis.ts'

const log = logger('peerverse:ledger')

export const SYNC_PROTOCOL = '/peerverse/ledger/sync/1.0.0'
/** Blocks in one sync answer. */
export const MAX_SYNC_BLOCKS = 32
/** Transactions a block holds at most (by count). */
export const MAX_TXS_PER_BLOCK = 2_000
/** Bytes of transactions a block holds at most. */
/** Kept under the signed-record ceiling (MAX_RECORD_BYTES, 256 KiB) that a proposal must fit. */
export const MAX_BLOCK_TX_BYTES = 200 * 1024
/** Pause after a commit before the next height starts (CometBFT's timeout_commit). */
export const COMMIT_PAUSE_MS = 250
/** A proposer with an empty mempool waits this long for a transaction before proposing an empty block (below the propose timeout). */
export const EMPTY_BLOCK_WAIT_MS = 2_000
/** How often a node behind its peers asks them for blocks. */
export const SYNC_INTERVAL_MS = 2_000

/** Signed votes kept for one height at most. */
export const MAX_VOTES_KEPT = 50_000

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
  private readonly c: LedgerComponents
  private consensus?: Consensus
  /** Blocks proposed at the current height, by hash. */
  private readonly proposed = new Map<string, Block>()
  /** Messages for the next heights, replayed when we get there (bounded). */
  private readonly early: Uint8Array[] = []
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  /** Our proposal waiting for transactions (see EMPTY_BLOCK_WAIT_MS). */
  private waitingForTxs?: { timer: ReturnType<typeof setTimeout>, build: () => void }
  /** (height/round)s whose proposal has waited for transactions already. */
  private readonly waited = new Set<string>()
  /** Signed bytes of this height's votes, to build the commit and evidence from. */
  private readonly voteBytes = new Map<string, Uint8Array>()
  private readonly rejected = new Map<string, { error: string, message: string }>()
  private syncTimer?: ReturnType<typeof setInterval>
  private started = false
  private busy: Promise<void> = Promise.resolve()

  constructor (components: LedgerComponents) {
    super()
    this.c = components
    this.genesis = components.genesis
    this.state = genesisState(components.genesis)
    this.mempool = new Mempool(components.genesis.chain)
  }

  get chainId (): string { return this.genesis.chain }
  private topic (kind: 'consensus' | 'blocks' | 'txs'): string { return `peerverse/ledger/${this.chainId}/${kind}` }
  get isValidator (): boolean { return this.state.validators.some(v => v.id === this.c.did) }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    // Replay committed blocks: the state is a pure function of them.
    for await (const stored of this.c.chain.blocks(1)) {
      const { state } = checkBlock(this.state, stored.block)
      this.state = state
    }
    log('chain %s at height %d', this.chainId, this.state.height)
    for (const kind of ['consensus', 'blocks', 'txs'] as const) this.c.subscribe(this.topic(kind))
    await this.c.net.handle(SYNC_PROTOCOL, (stream, connection) => { void this.serveSync(stream, connection) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS
    })
    this.syncTimer = setInterval(() => {
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
    clearInterval(this.syncTimer)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    if (this.waitingForTxs != null) { clearTimeout(this.waitingForTxs.timer); this.waitingForTxs = undefined }
    await this.busy.catch(() => {})
    await this.c.net.unhandle(SYNC_PROTOCOL)
  }

  /** Runs one step at a time: consensus input, commits and syncs never interleave. */
  private serial (fn: () => Promise<void>): Promise<void> {
    const next = this.busy.then(fn, fn)
    this.busy = next.catch(err => { log.error('ledger step failed: %s', (err as Error).message) })
    return next
  }

  private async startHeight (): Promise<void> {
    this.proposed.clear()
    this.voteBytes.clear()
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

  private async act (action: Action): Promise<void> {
    const consensus = this.consensus
    if (consensus == null) return
    switch (action.type) {
      case 'need-value': {
        if (this.mempool.size === 0 && !this.waited.has(`${action.height}/${action.round}`)) {
          this.waited.add(`${action.height}/${action.round}`)
          // Nothing to order: wait a little for transactions rather than fill the chain with empty
          // blocks, but less than the others' propose timeout.
          const build = (): void => {
            if (this.waitingForTxs == null) return
            clearTimeout(this.waitingForTxs.timer)
            this.waitingForTxs = undefined
            void this.serial(async () => {
              if (this.consensus !== consensus || !this.started) return
              await this.act(action)
            })
          }
          this.waitingForTxs = { timer: setTimeout(build, EMPTY_BLOCK_WAIT_MS), build }
          return
        }
        const txs = this.mempool.select(s => this.nextNonce(s), MAX_TXS_PER_BLOCK, MAX_BLOCK_TX_BYTES)
        const { block } = buildBlock(this.state, txs, this.c.did, Math.max(Date.now(), this.lastTime() + 1))
        const hash = blockHash(block.header)
        this.proposed.set(hash, block)
        await this.run(consensus.step({ type: 'value-ready', height: action.height, round: action.round, value: hash }))
        return
      }
      case 'propose': {
        const block = this.proposed.get(action.proposal.value)
        if (block == null) return
        await this.c.chain.putWal({ height: consensus.state.height, snapshot: consensus.toJSON() })
        const bytes = await signProposal(this.c.key, { height: action.proposal.height, round: action.proposal.round, polRound: action.proposal.polRound, value: action.proposal.value, block: encodeBlock(block) })
        await this.broadcast(bytes)
        return
      }
      case 'vote': {
        await this.c.chain.putWal({ height: consensus.state.height, snapshot: consensus.toJSON() })
        const bytes = await signVote(this.c.key, { type: action.vote.type, height: action.vote.height, round: action.vote.round, value: action.vote.value })
        await this.broadcast(bytes)
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
        await this.commitBlock({ block, commit })
        void this.c.publish(this.topic('blocks'), dagCbor.encode({ block: encodeBlock(block), commit })).catch(() => {})
        return
      }
      case 'need-proposal':
        // Block sync fetches the block once the others commit it.
        log('missing the proposal for %s at %d/%d', action.value, action.height, action.round)
        return
      case 'evidence': {
        const a = this.voteBytes.get(voteKey(action.a))
        const b = this.voteBytes.get(voteKey(action.b))
        if (a != null && b != null) await this.c.chain.putEvidence(a, b)
        this.safeDispatchEvent('ledger:evidence', { detail: { validator: action.a.validator, height: action.a.height, round: action.a.round } })
      }
    }
  }

  /** Publishes again the votes we signed at this height (GossipSub does not resend old messages). */
  private regossip (): void {
    for (const [key, bytes] of this.voteBytes) {
      if (key.startsWith(this.c.did + '/')) void this.c.publish(this.topic('consensus'), bytes).catch(() => {})
    }
  }

  private lastTime (): number {
    return this.state.height === 0 ? this.genesis.time : this.lastBlockTime
  }

  private lastBlockTime = 0

  /** Publishes a signed consensus message and feeds it to our own state machine. */
  private async broadcast (bytes: Uint8Array): Promise<void> {
    void this.c.publish(this.topic('consensus'), bytes).catch(() => {})
    await this.onConsensusMessage(bytes)
  }

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
      const record = dagCbor.decode(bytes) as { type?: string }
      if (record.type === 'peerverse/vote') {
        const vote = decodeVote(bytes)
        height = vote.height
        const { bytes: _bytes, ...plain } = vote
        if (height === this.state.height + 1 && this.voteBytes.size < MAX_VOTES_KEPT) this.voteBytes.set(voteKey(plain), bytes)
        input = { type: 'vote', vote: plain }
      } else {
        const p = decodeProposal(bytes)
        height = p.height
        if (consensus != null && height === this.state.height + 1) {
          let valid = true
          try {
            checkBlock(this.state, p.blockValue)
            if (p.blockValue.header.proposer !== p.proposer) valid = false
          } catch (err) {
            log('invalid block proposed by %s: %s', p.proposer, (err as Error).message)
            valid = false
          }
          if (valid) this.proposed.set(p.value, p.blockValue)
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

  /** Applies a committed block: check, store (synced), then move on. */
  private async commitBlock (stored: StoredBlock): Promise<void> {
    if (stored.block.header.height !== this.state.height + 1) return
    verifyCommit(stored.block, stored.commit, this.state.validators)
    const { state, receipts } = checkBlock(this.state, stored.block)
    await this.c.chain.putBlock(stored, receipts)
    this.state = state
    this.lastBlockTime = stored.block.header.time
    this.mempool.prune(s => this.nextNonce(s))
    for (const r of receipts) this.mempool.remove(r.tx)
    const hash = blockHash(stored.block.header)
    this.safeDispatchEvent('ledger:block', { detail: { height: state.height, hash, txs: stored.block.txs.length, stateRoot: stored.block.header.stateRoot } })
    for (const r of receipts) this.safeDispatchEvent('ledger:receipt', { detail: r })
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    if (this.waitingForTxs != null) { clearTimeout(this.waitingForTxs.timer); this.waitingForTxs = undefined }
    this.consensus = undefined
    const t = setTimeout(() => {
      this.timers.delete(t)
      void this.serial(async () => { if (this.started) await this.startHeight() })
    }, COMMIT_PAUSE_MS)
    this.timers.add(t)
  }

  /** A gossip message on one of our topics. */
  onGossip (topic: string, data: Uint8Array): void {
    if (topic === this.topic('consensus')) void this.serial(async () => { await this.onConsensusMessage(data) })
    else if (topic === this.topic('txs')) {
      try {
        this.mempool.add(data, s => this.nextNonce(s))
        this.waitingForTxs?.build()
      } catch {}
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

  // -- queries and transactions ---------------------------------------------------------------

  nextNonce (sender: string): number {
    return this.state.accounts.get(sender)?.nonce ?? 0
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

  /** Adds a signed transaction to the mempool and gossips it. Throws the mempool's named errors. */
  async submit (bytes: Uint8Array): Promise<Tx> {
    let tx: Tx
    try {
      tx = this.mempool.add(bytes, s => this.nextNonce(s))
    } catch (err) {
      try {
        const t = decodeTx(bytes)
        this.rejected.set(t.id, { error: (err as Error).name, message: (err as Error).message })
      } catch {}
      throw err
    }
    void this.c.publish(this.topic('txs'), bytes).catch(() => {})
    this.waitingForTxs?.build()
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
