/**
 * How consensus messages (proposals, votes, evidence) travel between validators, and the height's
 * messages kept to send again.
 *
 * Out: a message goes straight to each other validator over the chain's consensus protocol
 * (links.ts; CometBFT's consensus reactor), once the peers' signed bindings say which connected
 * peer acts for which validator, and over GossipSub as well unless every one of them has an open
 * stream. In: from the consensus topic, and from streams of peers bound to one of the height's
 * validators (anyone else's stream is ended unread), one message at a time.
 *
 * Resend: liveness needs every message a correct validator took to reach every correct validator.
 * Over direct links nothing is forwarded, so the height's votes and proposals are kept (bounded)
 * and sent again on a round timeout and while no block commits (CometBFT's gossip routines
 * likewise keep sending peers the votes they lack). The kept votes' signed bytes also make the
 * commit and the evidence of a double vote.
 */
import type { Stream } from '@libp2p/interface'
import { framed } from '../net/framed.ts'
import { FRAMING_ERRORS } from '../net/rpc.ts'
import type { DidOf, GossipPort, ProtocolPort, RejectSink, RemotePeer } from '../net/ports.ts'
import { MAX_PROPOSAL_MESSAGE_BYTES } from './chain.ts'
import type { Validator } from './consensus.ts'
import { LinkedChannel } from './links.ts'
import { MEMPOOL_RETRY_MS } from './tx-channel.ts'
import { consensusProtocol, ledgerTopic } from './wire.ts'

/** Consensus messages queued for one validator's stream at most; past it the message goes over GossipSub. */
export const MAX_CONSENSUS_STREAM_QUEUE = 64
/** Proposal messages of the current height kept to send again (the scheduled proposers' and ours). */
export const MAX_PROPOSALS_KEPT = 8
/** Signed votes kept for one height at most. */
export const MAX_VOTES_KEPT = 50_000

export class NotValidatorError extends Error {
  name = 'NotValidatorError'
}

/** The key a vote is kept under: one per (validator, height, round, type, value). */
export function voteKey (v: { validator: string, height: number, round: number, type: string, value: string | null }): string {
  return `${v.validator}/${v.height}/${v.round}/${v.type}/${v.value ?? 'nil'}`
}

export interface ConsensusChannelOptions {
  chain: string
  /** Our did: no stream to ourselves. */
  self: string
  gossip: GossipPort
  protocols: ProtocolPort
  didOf: DidOf
  onRejected?: RejectSink
  /** The validators of the height being decided. */
  validators: () => readonly Validator[]
  /** Takes in one message; a stream's next message is read once this resolves. */
  onMessage: (bytes: Uint8Array) => Promise<void>
}

export class ConsensusChannel {
  /** Consensus messages taken in, by the way they came, and proposals dropped as copies of one taken in already (for status and tests). */
  readonly received = { direct: 0, gossip: 0, copies: 0 }
  private readonly o: ConsensusChannelOptions
  private readonly protocol: string
  private readonly channel: LinkedChannel
  private started = false
  /** Signed bytes of this height's votes, to build the commit and evidence from and to send again. */
  private readonly votes = new Map<string, Uint8Array>()
  /** This height's proposal messages, to send again (bounded by MAX_PROPOSALS_KEPT). */
  private readonly proposals = new Map<string, Uint8Array>()

  constructor (options: ConsensusChannelOptions) {
    this.o = options
    this.protocol = consensusProtocol(options.chain)
    this.channel = new LinkedChannel(options, ledgerTopic(options.chain, 'consensus'), this.protocol, {
      maxFrameBytes: MAX_PROPOSAL_MESSAGE_BYTES, maxQueue: MAX_CONSENSUS_STREAM_QUEUE, retryMs: MEMPOOL_RETRY_MS
    }, {
      onGossip: data => {
        this.received.gossip++
        void this.o.onMessage(data)
      },
      onStream: (stream, remote) => { void this.readStream(stream, remote) }
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.channel.start()
  }

  /** Takes nothing more in; the protocol and links stay until `close`. */
  halt (): void {
    this.started = false
    this.channel.halt()
  }

  /** Stops handling the consensus protocol and closes our streams. */
  async close (): Promise<void> {
    this.halt()
    await this.channel.close()
  }

  /** Forgets the kept messages: a new height starts. */
  clearHeight (): void {
    this.votes.clear()
    this.proposals.clear()
  }

  /** Keeps a vote's signed bytes for this height (bounded by MAX_VOTES_KEPT). */
  keepVote (vote: Parameters<typeof voteKey>[0], bytes: Uint8Array): void {
    if (this.votes.size < MAX_VOTES_KEPT) this.votes.set(voteKey(vote), bytes)
  }

  /** A kept vote's signed bytes. */
  voteBytes (vote: Parameters<typeof voteKey>[0]): Uint8Array | undefined {
    return this.votes.get(voteKey(vote))
  }

  /** Keeps a proposal message of this height, under `round/value` (bounded by MAX_PROPOSALS_KEPT). */
  keepProposal (key: string, bytes: Uint8Array): void {
    if (this.proposals.size < MAX_PROPOSALS_KEPT) this.proposals.set(key, bytes)
  }

  /**
   * Whether `bytes` are exactly a proposal message kept at this height: one sent again (on a
   * timeout, or while no block commits) that was taken in already. Its block need not be decoded
   * and checked again: at full blocks, each copy of each kept proposal cost every receiver a
   * decode of the whole block, as rounds failed, when time mattered most.
   */
  isKeptProposal (bytes: Uint8Array): boolean {
    for (const kept of this.proposals.values()) {
      if (kept.length !== bytes.length) continue
      let i = 0
      while (i < bytes.length && kept[i] === bytes[i]) i++
      if (i === bytes.length) { this.received.copies++; return true }
    }
    return false
  }

  /** Sends again every vote and proposal kept of this height, ours and the others'. */
  resend (): void {
    for (const bytes of this.proposals.values()) this.send(bytes)
    for (const bytes of this.votes.values()) this.send(bytes)
  }

  /**
   * Sends one of our consensus messages to the other validators: straight to each over its
   * consensus stream, and over GossipSub as well unless every one of them has an open stream.
   */
  send (bytes: Uint8Array): void {
    const links = this.channel.links
    let everyone = links != null
    if (links != null) {
      const peersOf = new Map<string, string[]>()
      for (const peer of this.o.protocols.peers()) {
        const did = this.o.didOf(peer)
        if (did != null) peersOf.set(did, [...(peersOf.get(did) ?? []), peer])
      }
      for (const v of this.o.validators()) {
        if (v.id === this.o.self) continue
        let open = false
        for (const peer of peersOf.get(v.id) ?? []) if (links.send(peer, bytes) === 'open') open = true
        if (!open) everyone = false
      }
    }
    if (!everyone) this.gossip(bytes)
  }

  /** Publishes on the consensus topic only (evidence: every node keeps it). */
  gossip (bytes: Uint8Array): void {
    this.channel.publish(bytes)
  }

  /**
   * Reads a validator's consensus stream: length-prefixed messages, each taken in turn. Only a
   * peer bound to one of our validators may send here (others gossip); an oversized frame, or a
   * stream from anyone else, is ended.
   */
  private async readStream (stream: Stream, remote: RemotePeer): Promise<void> {
    const f = framed(stream, { maxFrameBytes: MAX_PROPOSAL_MESSAGE_BYTES })
    try {
      const did = this.o.didOf(remote.peer)
      if (did == null || !this.o.validators().some(v => v.id === did)) throw new NotValidatorError(`peer ${remote.peer} is not bound to a validator`)
      while (true) {
        const frame = await f.read()
        if (frame == null || !this.started) break
        this.received.direct++
        // One message at a time: the next is read once this one is taken in.
        await this.o.onMessage(frame)
      }
    } catch (err) {
      stream.abort(err as Error)
      if (FRAMING_ERRORS.has((err as Error).name)) this.o.onRejected?.(remote.peer, this.protocol, err as Error)
      return
    }
    stream.abort(new Error('ledger stopped'))
  }
}
