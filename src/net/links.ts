/**
 * Links that carry a way in, like a magnet link with peers in it: what to open (a network to join,
 * a space, some content) and a few addresses of peers that hold it, so the opener can dial them
 * before the DHT has found anyone. One format everywhere; it runs anywhere (the browser client
 * parses the same links):
 *
 *   pv:join=<genesis CID>&peer=<multiaddr>&peer=...      a join code (`peerverse invite`)
 *   pv:space=<space id>&peer=...                         a space
 *   pv:content=<CID>&peer=...                            a file or directory
 *
 * The browser form is the same text after `#` in the client's URL
 * (`http://127.0.0.1:7400/#space=<id>&peer=...`); `parseLink` takes either, and only ever reads the
 * part after `pv:` or `#`, so a link made on one peer opens on any other peer's client. Multiaddrs
 * are percent-encoded; each must end in `/p2p/<peer id>` so the dialled peer is authenticated.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'

/** Peers a link carries at most (more are refused, not truncated: a link is made by us or refused). */
export const MAX_LINK_PEERS = 8
/** Characters of a link at most. */
export const MAX_LINK_LENGTH = 4096
/** Characters of one multiaddr in a link at most. */
export const MAX_LINK_ADDRESS_LENGTH = 400
/** Characters of a space id (as the space capability's MAX_SPACE_ID_LENGTH). */
export const MAX_LINK_SPACE_ID_LENGTH = 100

export const LINK_SCHEME = 'pv:'

export type LinkKind = 'join' | 'space' | 'content'

export interface Link {
  kind: LinkKind
  /** The genesis CID (join), the space id (space) or the content CID (content). */
  target: string
  /** Multiaddrs of peers that hold it, each ending in /p2p/<peer id>. */
  peers: string[]
}

export class InvalidLinkError extends Error {
  name = 'InvalidLinkError'
}

const KINDS: readonly LinkKind[] = ['join', 'space', 'content']

function checkTarget (kind: LinkKind, target: string): string {
  if (kind === 'space') {
    if (!/^[a-z0-9]+$/i.test(target) || target.length > MAX_LINK_SPACE_ID_LENGTH) throw new InvalidLinkError(`a space link names a space id of letters and digits (at most ${MAX_LINK_SPACE_ID_LENGTH}), got ${JSON.stringify(target.slice(0, 120))}`)
    return target
  }
  try {
    return CID.parse(target).toV1().toString()
  } catch {
    throw new InvalidLinkError(`a ${kind} link names a CID, got ${JSON.stringify(target.slice(0, 120))}`)
  }
}

/** Checks one peer address of a link: a multiaddr ending in /p2p/<peer id>. */
export function checkLinkPeer (addr: string): string {
  if (typeof addr !== 'string' || addr.length === 0 || addr.length > MAX_LINK_ADDRESS_LENGTH) throw new InvalidLinkError(`a peer address in a link is a multiaddr of at most ${MAX_LINK_ADDRESS_LENGTH} characters`)
  let ma
  try {
    ma = multiaddr(addr)
  } catch (err) {
    throw new InvalidLinkError(`${JSON.stringify(addr.slice(0, 120))} is not a multiaddr (${(err as Error).message})`)
  }
  const last = ma.getComponents().at(-1)
  if (last?.name !== 'p2p') throw new InvalidLinkError(`${addr} must end in /p2p/<peer id> so the peer can be authenticated`)
  return ma.toString()
}

/** Makes a link's text (`pv:...`); `browserLink` makes the client URL form. */
export function formatLink (link: Link): string {
  return LINK_SCHEME + linkFragment(link)
}

/** The part after `#` in a client URL: `<kind>=<target>&peer=...`. */
export function linkFragment (link: Link): string {
  const target = checkTarget(link.kind, link.target)
  if (link.peers.length > MAX_LINK_PEERS) throw new InvalidLinkError(`a link carries at most ${MAX_LINK_PEERS} peers`)
  const parts = [`${link.kind}=${encodeURIComponent(target)}`, ...link.peers.map(p => `peer=${encodeURIComponent(checkLinkPeer(p))}`)]
  const text = parts.join('&')
  if (text.length + LINK_SCHEME.length > MAX_LINK_LENGTH) throw new InvalidLinkError(`a link is at most ${MAX_LINK_LENGTH} characters`)
  return text
}

/** The client URL of a link on the client served at `origin` (such as `http://127.0.0.1:7400`). */
export function browserLink (origin: string, link: Link): string {
  return `${origin.replace(/\/+$/, '')}/#${linkFragment(link)}`
}

/**
 * Parses a link in any of its forms: `pv:...`, a client URL with `#...`, or the bare fragment.
 * Throws InvalidLinkError naming what is wrong; never returns a partial link.
 */
export function parseLink (text: string): Link {
  if (typeof text !== 'string') throw new InvalidLinkError('a link is text')
  const t = text.trim()
  if (t.length === 0) throw new InvalidLinkError('the link is empty')
  if (t.length > MAX_LINK_LENGTH) throw new InvalidLinkError(`a link is at most ${MAX_LINK_LENGTH} characters`)
  let body: string
  if (t.startsWith(LINK_SCHEME)) body = t.slice(LINK_SCHEME.length)
  else if (t.includes('#')) body = t.slice(t.indexOf('#') + 1)
  else body = t
  let kind: LinkKind | undefined
  let target: string | undefined
  const peers: string[] = []
  for (const part of body.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    if (eq <= 0) throw new InvalidLinkError(`${JSON.stringify(part.slice(0, 120))} is not key=value`)
    const key = part.slice(0, eq)
    let value: string
    try {
      value = decodeURIComponent(part.slice(eq + 1))
    } catch {
      throw new InvalidLinkError(`the ${key} of the link is not percent-encoded text`)
    }
    if (key === 'peer') {
      if (peers.length >= MAX_LINK_PEERS) throw new InvalidLinkError(`a link carries at most ${MAX_LINK_PEERS} peers`)
      peers.push(checkLinkPeer(value))
    } else if ((KINDS as readonly string[]).includes(key)) {
      if (kind != null) throw new InvalidLinkError('a link names one thing (join, space or content)')
      kind = key as LinkKind
      target = value
    }
    // Unknown keys are ignored: a later version may add some.
  }
  if (kind == null || target == null) throw new InvalidLinkError('a link names a network (join=), a space (space=) or content (content=)')
  return { kind, target: checkTarget(kind, target), peers }
}

/** The peer id at the end of a link's peer address. */
export function linkPeerId (addr: string): string {
  return multiaddr(addr).getComponents().at(-1)?.value ?? ''
}

/**
 * Addresses of ours worth putting in a link, best first: public ones, then private (LAN) ones,
 * then loopback (another data dir on this machine), then relayed ones; never an unspecified
 * address (0.0.0.0, ::). Each gets /p2p/<our peer id> if it lacks it.
 */
export function shareableAddresses (addresses: string[], peerId: string, max = MAX_LINK_PEERS): string[] {
  const rank = (a: string): number => {
    if (a.includes('/p2p-circuit')) return 3
    const ip = /^\/ip[46]\/([^/]+)/.exec(a)?.[1] ?? ''
    if (ip === '127.0.0.1' || ip === '::1' || ip.startsWith('127.')) return 2
    if (/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|169\.254\.|f[cd]|fe80)/i.test(ip)) return 1
    return 0
  }
  const out: string[] = []
  for (const a of addresses) {
    if (/^\/ip4\/0\.0\.0\.0\/|^\/ip6\/::\//.test(a)) continue
    const full = a.includes(`/p2p/${peerId}`) && a.endsWith(peerId) ? a : `${a}/p2p/${peerId}`
    if (!out.includes(full)) out.push(full)
  }
  return out.sort((x, y) => rank(x) - rank(y)).slice(0, max)
}

/** A link of another kind than the command takes (a content link given to `space join`). */
export class WrongLinkKindError extends Error {
  name = 'WrongLinkKindError'
}

/** Parses a link and checks it names `kind`; WrongLinkKindError (or InvalidLinkError) otherwise. */
export function parseLinkOf (text: string, kind: LinkKind): Link {
  const link = parseLink(text)
  if (link.kind !== kind) throw new WrongLinkKindError(`this is a ${link.kind} link; a ${kind} link was expected`)
  return link
}

/** A peer a link names, with every address the link gives for it. */
export interface LinkHolder {
  peer: string
  addresses: string[]
}

/**
 * A link's peer addresses grouped by peer (a link may give one peer several addresses), checked,
 * without `self`, at most MAX_LINK_PEERS addresses in all (more are refused).
 */
export function linkHolders (peers: readonly string[], self?: string): LinkHolder[] {
  if (!Array.isArray(peers)) throw new InvalidLinkError('a link\'s peers are a list of multiaddrs')
  if (peers.length > MAX_LINK_PEERS) throw new InvalidLinkError(`a link carries at most ${MAX_LINK_PEERS} peers`)
  const byPeer = new Map<string, string[]>()
  for (const p of peers) {
    const addr = checkLinkPeer(p)
    const id = linkPeerId(addr)
    if (id === self) continue
    const list = byPeer.get(id) ?? []
    if (!list.includes(addr)) list.push(addr)
    byPeer.set(id, list)
  }
  return [...byPeer].map(([peer, addresses]) => ({ peer, addresses }))
}

/**
 * Whether text given where an id or a link is taken is meant as a link (`pv:...`, a client URL,
 * a bare `kind=...` fragment); anything else is an id or CID, checked as one, so a mistyped CID
 * gets the CID's error rather than the link's.
 */
export function looksLikeLink (text: string): boolean {
  const t = text.trim()
  return t.startsWith(LINK_SCHEME) || t.includes('#') || t.includes('=')
}
