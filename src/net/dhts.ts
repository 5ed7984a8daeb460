/**
 * The node's two DHTs (network.ts: the WAN one and the LAN one) used as one: a lookup asks both
 * at once and the first answer wins, an announcement goes to both, and the status reports each.
 * A DHT with an empty routing table is left out while the other has peers: kad-dht holds a query
 * on an empty table until a peer turns up or the caller gives up, and a default peer on a LAN
 * never gets a WAN peer, so asking it would only wait for the timeout.
 */
import type { PeerId } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Network } from './network.ts'

export type DhtName = 'wan' | 'lan'

export interface DhtView {
  /** 'server' answers other peers' queries; 'client' only asks. */
  mode: 'server' | 'client'
  /** Peers in the routing table. */
  peers: number
}

export type DhtStatus = Record<DhtName, DhtView>

export class PeerNotFoundError extends Error {
  name = 'PeerNotFoundError'
}

/** What is read of kad-dht beyond its public interface (the service is a KadDHT at runtime). */
interface RoutingTableView { size: number }

/** The routing table size of one DHT. */
export function routingTableSize (dht: KadDHT): number {
  const table = (dht as unknown as { routingTable?: RoutingTableView }).routingTable
  return typeof table?.size === 'number' ? table.size : 0
}

/** Both DHTs by name (the LAN one where the network runs it). */
export function dhts (net: Network): Array<{ name: DhtName, dht: KadDHT }> {
  const all: Array<{ name: DhtName, dht: KadDHT }> = [{ name: 'wan', dht: net.services.dht }]
  if (net.services.lanDht != null) all.push({ name: 'lan', dht: net.services.lanDht })
  return all
}

/** The DHTs worth asking now: those with peers in their routing table, or both when neither has any. */
export function activeDhts (net: Network): KadDHT[] {
  const all = dhts(net).map(d => d.dht)
  const withPeers = all.filter(d => routingTableSize(d) > 0)
  return withPeers.length > 0 ? withPeers : all
}

/** Each DHT's mode and routing table size. */
export function dhtStatus (net: Network): DhtStatus {
  const view = (dht: KadDHT | undefined): DhtView => dht == null ? { mode: 'client', peers: 0 } : { mode: dht.getMode(), peers: routingTableSize(dht) }
  return { wan: view(net.services.dht), lan: view(net.services.lanDht) }
}

export interface DhtPeerAnswer {
  addresses: string[]
  /** The peer whose answer named it. */
  from: string
  /** DHT peers that answered during the lookup (both DHTs). */
  queried: number
  /** The DHT that answered first. */
  dht: DhtName
}

/**
 * Looks `peer` up on both DHTs at once, never in the local cache; the first answer that carries
 * addresses wins and the other lookup is stopped. Throws PeerNotFoundError when neither finds it.
 */
export async function findPeerOnDhts (net: Network, peer: PeerId, options: { signal?: AbortSignal } = {}): Promise<DhtPeerAnswer> {
  const controller = new AbortController()
  const signal = options.signal == null ? controller.signal : AbortSignal.any([controller.signal, options.signal])
  const active = new Set(activeDhts(net))
  let queried = 0
  const lookup = async (name: DhtName, dht: KadDHT): Promise<DhtPeerAnswer> => {
    for await (const event of dht.findPeer(peer, { signal, useCache: false })) {
      if (event.name === 'PEER_RESPONSE') queried++
      if (event.name === 'FINAL_PEER' && event.peer.multiaddrs.length > 0) {
        return { addresses: event.peer.multiaddrs.map(a => a.toString()), from: event.from.toString(), queried, dht: name }
      }
    }
    throw new PeerNotFoundError(`peer ${peer.toString()} not found on the ${name} DHT`)
  }
  try {
    return await Promise.any(dhts(net).filter(d => active.has(d.dht)).map(async d => lookup(d.name, d.dht)))
  } catch (err) {
    options.signal?.throwIfAborted()
    const first = (err as AggregateError).errors?.[0] as Error | undefined
    if (first != null && first.name !== 'PeerNotFoundError' && first.name !== 'NotFoundError') throw first
    throw new PeerNotFoundError(`peer ${peer.toString()} not found`)
  } finally {
    controller.abort()
  }
}
