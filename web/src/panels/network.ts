// The network: the chain this peer follows and who shares it, the DHT, invites out and in.
import { ApiError, type Api } from '../api.ts'
import { $ } from '../dom.ts'
import { debouncer } from '../events.ts'
import { copyText, formatLink, parseLink, shortId, type Link } from '../links.ts'
import type { Panel, Report } from '../panel.ts'

/** How often the network section asks the peer again (peer events also trigger it). */
export const NETWORK_REFRESH_MS = 5000

/** The network part of the peer's status (each part absent on a peer that does not report it). */
export interface NetworkStatus {
  peers?: string[]
  network?: { genesis: string, chain: string, devnet: boolean, peersOnChain: number, peersOnOtherChains: number }
  dht?: { wan: { mode: string, peers: number }, lan: { mode: string, peers: number } }
  mdns?: boolean
  reach?: { reachability: 'public' | 'behind-nat' | 'unknown', relays: string[] }
  connections?: { total: number, direct: number, relayed: number, webrtc: number }
}

/** The one line on reachability: public, behind NAT through N relays, or not known yet; and how peers are connected. */
export function reachLine (s: Pick<NetworkStatus, 'reach' | 'connections'>): string {
  const r = s.reach
  if (r == null) return 'unknown'
  const what = r.reachability === 'public' ? 'public' : r.reachability === 'behind-nat' ? 'behind NAT' : 'not known yet'
  const relays = r.relays.length === 0 ? (r.reachability === 'behind-nat' ? ', no relay yet' : '') : `, reachable through ${r.relays.length} relay${r.relays.length === 1 ? '' : 's'}`
  const c = s.connections
  const conns = c == null ? '' : ` · ${c.total} connection${c.total === 1 ? '' : 's'} (${c.direct - c.webrtc} direct${c.webrtc > 0 ? `, ${c.webrtc} WebRTC` : ''}${c.relayed > 0 ? `, ${c.relayed} relayed` : ''})`
  return `${what}${relays}${conns}`
}

export interface NetworkContext {
  api: Pick<Api, 'get' | 'post'>
  report: Report
  /** After this peer joined another network: everything shown may have changed. */
  joined: () => Promise<void>
}

export interface NetworkPanel extends Panel {
  refresh: () => Promise<void>
  /** A join link to confirm (from the address bar or pasted elsewhere). */
  offerJoin: (link: Link) => void
  /** The last status seen (for tests and other panels). */
  readonly status: NetworkStatus | null
}

/** The warning when every connected peer follows another chain (null when there is none). */
export function chainWarning (n: NetworkStatus['network']): string | null {
  if (n == null || n.peersOnOtherChains === 0 || n.peersOnChain > 0) return null
  return `All ${n.peersOnOtherChains} connected peer${n.peersOnOtherChains === 1 ? ' is' : 's are'} on another chain: this peer does not share their ledger (payments between you will not arrive). Join their network with an invite to follow their chain.`
}

export function mountNetwork (ctx: NetworkContext): NetworkPanel {
  const { api, report } = ctx
  const debounce = debouncer()
  let status: NetworkStatus | null = null
  let pending: Link | null = null
  let failing = false

  async function refresh (): Promise<void> {
    try {
      status = await api.get<NetworkStatus>('/api/v0/status')
      failing = false
    } catch (err) {
      // One message per outage, not one per interval.
      if (!failing && !(err instanceof ApiError && (err.code === 'PeerUnreachable' || err.status === 401))) report.showError('network', err)
      failing = true
      return
    }
    render(status)
  }

  function render (s: NetworkStatus): void {
    const n = s.network
    const chain = $('net-chain')
    chain.textContent = n?.chain ?? 'unknown'
    chain.title = n?.chain ?? ''
    chain.dataset.chain = n?.chain ?? ''
    $('net-devnet').hidden = n?.devnet !== true
    const genesis = $('net-genesis')
    genesis.textContent = n != null ? shortId(n.genesis) : ''
    genesis.title = n?.genesis ?? ''
    genesis.dataset.genesis = n?.genesis ?? ''
    const peers = $('net-peers')
    if (n != null) {
      peers.textContent = `${n.peersOnChain} on this chain, ${n.peersOnOtherChains} on other chains`
      peers.dataset.onChain = String(n.peersOnChain)
      peers.dataset.otherChains = String(n.peersOnOtherChains)
    } else {
      peers.textContent = `${s.peers?.length ?? 0} connected`
    }
    const warning = chainWarning(n)
    $('net-warning').hidden = warning == null
    $('net-warning').textContent = warning ?? ''
    const reach = $('net-reach')
    reach.textContent = reachLine(s)
    reach.dataset.reachability = s.reach?.reachability ?? 'unknown'
    const d = s.dht
    const dht = $('net-dht')
    dht.textContent = d == null
      ? 'unknown'
      : `WAN ${d.wan.mode} (${d.wan.peers} in table) · LAN ${d.lan.mode} (${d.lan.peers} in table)${s.mdns == null ? '' : s.mdns ? ' · mDNS on' : ' · mDNS off'}`
    if (d != null) {
      dht.dataset.wanMode = d.wan.mode
      dht.dataset.wanPeers = String(d.wan.peers)
      dht.dataset.lanMode = d.lan.mode
      dht.dataset.lanPeers = String(d.lan.peers)
    }
  }

  async function invite (): Promise<void> {
    let got: { code: string, link: string }
    try {
      got = await api.get<{ code: string, link: string }>('/api/v0/network/invite')
    } catch (err) {
      report.showError('invite', err)
      return
    }
    $('invite-code').textContent = got.code
    $('invite-link').textContent = got.link
    $('invite-box').hidden = false
  }

  async function copy (id: string): Promise<void> {
    const text = $(id).textContent ?? ''
    if (text === '') return
    report.showInfo(await copyText(text) ? `copied ${text}` : text)
  }

  function showResult (text: string, code?: string): void {
    const el = $('netjoin-result')
    el.hidden = false
    el.textContent = text
    if (code != null) el.dataset.code = code
    else delete el.dataset.code
  }

  function offerJoin (link: Link): void {
    if (link.kind !== 'join') {
      showResult(`that link opens a ${link.kind}, not a network`, 'InvalidLinkError')
      return
    }
    pending = link
    $('netjoin-question').textContent = `Join the network whose genesis is ${shortId(link.target)} through ${link.peers.length} peer${link.peers.length === 1 ? '' : 's'}? This peer will follow that network's chain.`
    $('netjoin-question').title = link.target
    $('netjoin-confirm').hidden = false
    $('netjoin-result').hidden = true
  }

  async function confirmJoin (): Promise<void> {
    const link = pending
    if (link == null) return
    pending = null
    $('netjoin-confirm').hidden = true
    $<HTMLButtonElement>('netjoin-send').disabled = true
    showResult('Joining: fetching the genesis from the invite\'s peers…')
    try {
      // The canonical text of the link (pv:join=...): whatever form was pasted, the peer reads one.
      const body = { link: formatLink(link) }
      const r = await api.post<{ genesis: string, chain: string, switched: boolean }>('/api/v0/network/join', body)
      showResult(r.switched ? `Joined: now following chain ${r.chain}.` : `Already on this network (chain ${r.chain}).`)
      $<HTMLInputElement>('netjoin-input').value = ''
      clearJoinHash()
      await refresh()
      if (r.switched) await ctx.joined()
    } catch (err) {
      const code = err instanceof ApiError ? err.code : (err as Error).name
      showResult(`${code}: ${(err as Error).message}`, code)
      report.showError('join network', err)
    } finally {
      $<HTMLButtonElement>('netjoin-send').disabled = false
    }
  }

  function clearJoinHash (): void {
    if (/(^#|&)join=/.test(location.hash)) history.replaceState(history.state, '', location.pathname + location.search)
  }

  $('invite').addEventListener('click', () => { void invite() })
  $('invite-copy-code').addEventListener('click', () => { void copy('invite-code') })
  $('invite-copy-link').addEventListener('click', () => { void copy('invite-link') })
  $('netjoin-form').addEventListener('submit', e => {
    e.preventDefault()
    let link: Link
    try {
      link = parseLink($<HTMLInputElement>('netjoin-input').value)
    } catch (err) {
      showResult(`${(err as Error).name}: ${(err as Error).message}`, (err as Error).name)
      return
    }
    offerJoin(link)
  })
  $('netjoin-yes').addEventListener('click', () => { void confirmJoin() })
  $('netjoin-no').addEventListener('click', () => {
    pending = null
    $('netjoin-confirm').hidden = true
    clearJoinHash()
  })
  setInterval(() => { if (document.visibilityState !== 'hidden') void refresh() }, NETWORK_REFRESH_MS)

  const changed = (): void => { debounce('network', 500, refresh) }
  return {
    refresh,
    offerJoin,
    get status () { return status },
    events: {
      'peer:connect': changed,
      'peer:disconnect': changed,
      'peer:identified': changed,
      'network:joined': changed,
      'network:mismatch': changed
    }
  }
}
