/**
 * The ledger's names and formats on the wire: its stream protocol ids and gossip topics (each
 * with its version), the transaction batch that the transaction topic and the mempool protocol
 * carry, and the rule for which gossiped evidence a node keeps. Pure, so tests and other peers
 * (a browser, a tool) can speak it without the service.
 *
 * The consensus topic carries signed votes, proposal messages and evidence of double votes (the
 * two signed votes; chain.ts); the transaction topic carries batches, a DAG-CBOR list of
 * transactions; the blocks topic a committed block with its commit. Both versioned topics have
 * the version in their names: version 2 is the proposal-beside-block format and the batches;
 * version 3 the land rules (land.ts: claims need the space's owner, its grant or its price; the
 * land-grant, land-revoke and land-price transactions; spaces and grants in the state root). The
 * direct mempool and consensus protocols carry the same messages and take the same version, so
 * nodes of different rules never exchange transactions or votes they would judge differently.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { MAX_TX_BYTES } from './tx.ts'

/** Blocks by height, with their commits, for a node catching up. */
export const SYNC_PROTOCOL = '/peerverse/ledger/sync/1.0.0'
/** Version of the consensus and transaction topics' wire formats and the rules they carry (in their names and the direct protocols'). */
export const TOPIC_VERSION = 3

/**
 * A validator sends its transaction batches straight to each connected peer over this protocol
 * (CometBFT's mempool reactor) rather than over GossipSub: a peer does not forward what came this
 * way, so each batch reaches each neighbour once, where GossipSub's mesh delivers every copy three
 * times between four validators. Peers that are not validators gossip theirs, which relays them.
 */
export function mempoolProtocol (chain: string): string {
  // Per chain: a peer on another chain does not speak it, so it is never sent our transactions.
  return `/peerverse/ledger/${encodeURIComponent(chain)}/mempool/${TOPIC_VERSION}.0.0`
}

/**
 * A validator sends its proposals and votes straight to the other validators over this protocol
 * (CometBFT's consensus reactor), once it knows which connected peer acts for which validator (the
 * peers' signed bindings). Messages that came this way are not forwarded. While some validator is
 * not reachable so, the message goes over GossipSub too, whose mesh relays it: a validator with no
 * direct link to another still hears from it and is heard.
 */
export function consensusProtocol (chain: string): string {
  return `/peerverse/ledger/${encodeURIComponent(chain)}/consensus/${TOPIC_VERSION}.0.0`
}

export type LedgerTopic = 'consensus' | 'blocks' | 'txs'

/** A chain's gossip topic of one kind (the consensus and transaction topics carry TOPIC_VERSION). */
export function ledgerTopic (chain: string, kind: LedgerTopic): string {
  return kind === 'blocks' ? `peerverse/ledger/${chain}/blocks` : `peerverse/ledger/${chain}/${kind}/${TOPIC_VERSION}`
}

/** Transactions in one gossiped batch at most. */
export const MAX_TX_BATCH_TXS = 512
/** Bytes of transactions in one gossiped batch at most. */
export const MAX_TX_BATCH_BYTES = 128 * 1024
/** An encoded batch at most: MAX_TX_BATCH_BYTES of transactions plus each one's CBOR header and the list's. */
export const MAX_TX_BATCH_MESSAGE_BYTES = MAX_TX_BATCH_BYTES + 3 * MAX_TX_BATCH_TXS + 5

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

/** Gossiped evidence of a double vote is kept only for heights this close to ours. */
export const MAX_EVIDENCE_AGE_HEIGHTS = 1000

/** Whether gossiped evidence for `height` is kept by a node at `ours`: up to two heights ahead, MAX_EVIDENCE_AGE_HEIGHTS behind. */
export function evidenceHeightKept (height: number, ours: number): boolean {
  return height <= ours + 2 && height + MAX_EVIDENCE_AGE_HEIGHTS >= ours
}
