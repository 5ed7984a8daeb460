/**
 * Node-only: the API's routes for the node itself and its network: status, peers, DHT peer
 * lookups, dialling, ping, the deny list, and raw gossip topics.
 */
import { ApiError } from '../errors.ts'
import { str, type Route } from '../routes.ts'
import { browserLink, formatLink, shareableAddresses, type Link } from '../../net/links.ts'

/** Peers in one deny list. */
export const MAX_API_DENY_PEERS = 1024

export const nodeRoutes: Route[] = [
  { method: 'GET', path: '/api/v0/status', handle: ({ node }) => node.status() },
  {
    method: 'GET',
    path: '/api/v0/network/invite',
    handle: ({ node, req }) => {
      const link: Link = { kind: 'join', target: node.status().network.genesis, peers: shareableAddresses(node.addresses(), node.peerId) }
      return { code: formatLink(link), link: browserLink(`http://${req.headers.host ?? '127.0.0.1'}`, link) }
    }
  },
  {
    method: 'POST',
    path: '/api/v0/network/join',
    handle: async ({ node, body }) => {
      try {
        return await node.chain.join(str(await body(), 'link'))
      } catch (err) {
        const e = err as Error
        if (e.name === 'NetworkMismatchError') throw new ApiError(409, e.name, e.message)
        if (e.name === 'JoinError') throw new ApiError(504, e.name, e.message)
        if (e.name === 'InvalidLinkError' || e.name === 'ChainClaimError') throw new ApiError(400, e.name, e.message)
        throw err
      }
    }
  },
  { method: 'GET', path: '/api/v0/peers', handle: ({ node }) => ({ peers: node.peers() }) },
  { method: 'GET', path: '/api/v0/dht/peer/*', handle: async ({ node, rest, signal }) => await node.findPeer(decodeURIComponent(rest), { signal }) },
  { method: 'GET', path: '/api/v0/gossip/topics', handle: ({ node }) => ({ topics: node.topics() }) },
  { method: 'GET', path: '/api/v0/gossip/peers', handle: ({ node, url }) => ({ peers: node.topicPeers(url.searchParams.get('topic') ?? '') }) },
  { method: 'POST', path: '/api/v0/connect', handle: async ({ node, body, signal }) => ({ peerId: await node.connect(str(await body(), 'address'), { signal }) }) },
  { method: 'POST', path: '/api/v0/ping', handle: async ({ node, body, signal }) => ({ rttMs: await node.ping(str(await body(), 'target'), { signal }) }) },
  {
    method: 'POST',
    path: '/api/v0/net/deny',
    handle: async ({ node, body }) => {
      const peers = (await body()).peers
      if (!Array.isArray(peers) || peers.length > MAX_API_DENY_PEERS || !peers.every(p => typeof p === 'string')) throw new ApiError(400, 'BadRequest', `peers must be an array of at most ${MAX_API_DENY_PEERS} peer ids`)
      return { peers: await node.denyPeers(peers) }
    }
  },
  { method: 'POST', path: '/api/v0/gossip/subscribe', handle: async ({ node, body }) => { node.subscribe(str(await body(), 'topic')); return { topics: node.topics() } } },
  { method: 'POST', path: '/api/v0/gossip/unsubscribe', handle: async ({ node, body }) => { node.unsubscribe(str(await body(), 'topic')); return { topics: node.topics() } } },
  {
    method: 'POST',
    path: '/api/v0/gossip/publish',
    handle: async ({ node, body }) => {
      const b = await body()
      const data = typeof b.data === 'string'
        ? new TextEncoder().encode(b.data)
        : typeof b.dataBase64 === 'string' ? new Uint8Array(Buffer.from(b.dataBase64, 'base64')) : undefined
      if (data == null) throw new ApiError(400, 'BadRequest', 'data (text) or dataBase64 is required')
      return { recipients: await node.publish(str(b, 'topic'), data) }
    }
  }
]
