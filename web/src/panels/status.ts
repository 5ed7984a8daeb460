// The status banner (peer connection, joining, alone) and the error and info messages.
import { ApiError, type Api } from '../api.ts'
import { $, h } from '../dom.ts'
import { debouncer } from '../events.ts'
import type { Panel, Report } from '../panel.ts'
import type { Store } from '../store.ts'

/** How long an error stays on screen. */
export const ERROR_SHOW_MS = 12_000

/** Sets the banner's state and text (hidden when all is well). */
export function setBannerText (state: string, text: string): void {
  const banner = $('status-banner')
  banner.dataset.state = state
  banner.textContent = text
  banner.hidden = state === 'ok'
}

export interface StatusContext {
  api: Pick<Api, 'get'>
  store: Pick<Store, 'did'>
}

export interface StatusPanel extends Panel, Report {
  /** True once the peer has refused our token. */
  readonly badToken: boolean
  /** Asks the peer who we are and how many peers it has. */
  refresh: () => Promise<void>
  /** The event stream's state; true when it has just come up. */
  streamState: (s: 'connecting' | 'open' | 'closed', detail?: { retryInMs?: number }) => boolean
  /** The space being joined (null when done). */
  setJoining: (id: string | null) => void
}

export function mountStatus (ctx: StatusContext): StatusPanel {
  const { api, store } = ctx
  let wsOpen = false
  let badToken = false
  let wsRetryAt = 0
  let joining: string | null = null
  let peers = -1
  const debounce = debouncer()

  function showError (context: string, err: unknown): void {
    const e = err as Error
    const code = err instanceof ApiError ? err.code : e?.name ?? 'Error'
    const text = `${context}: ${e?.message ?? String(err)}`
    const box = h('div', { class: 'error', 'data-testid': 'error', 'data-code': code, role: 'alert' }, h('span', { text }), h('button', { type: 'button', class: 'close', 'aria-label': 'dismiss', text: '×' }))
    box.querySelector('button')?.addEventListener('click', () => { box.remove() })
    $('errors').append(box)
    setTimeout(() => { box.remove() }, ERROR_SHOW_MS)
  }

  function showInfo (text: string): void {
    const box = h('div', { class: 'info', 'data-testid': 'info', role: 'status', text })
    $('errors').append(box)
    setTimeout(() => { box.remove() }, ERROR_SHOW_MS / 2)
  }

  function updateBanner (): void {
    if (badToken) {
      setBannerText('bad-token', 'Your peer refused this page\'s token (each start of the peer makes a new one): open the URL the peer printed again.')
    } else if (!wsOpen) {
      const secs = Math.max(0, Math.ceil((wsRetryAt - Date.now()) / 1000))
      setBannerText('connecting', wsRetryAt === 0 ? 'Connecting to your peer…' : `Not connected to your peer. Retrying${secs > 0 ? ` in ${secs}s` : ''}… (is \`peerverse start\` still running?)`)
    } else if (joining != null) {
      setBannerText('joining', 'Joining the space: looking for its members…')
    } else if (peers === 0) {
      setBannerText('no-peers', 'No other peers connected yet: you are on your own until someone joins or you bootstrap from a peer.')
    } else {
      setBannerText('ok', '')
    }
  }
  setInterval(() => { if (!wsOpen) updateBanner() }, 1000)

  async function refresh (): Promise<void> {
    try {
      const s = await api.get<{ did: string, peers: string[] }>('/api/v0/status')
      store.did = s.did
      peers = s.peers.length
      badToken = false
      $('address').textContent = s.did
      $('address').title = s.did
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) badToken = true
      else if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) showError('status', err)
    }
    updateBanner()
  }

  const peersChanged = (): void => { debounce('status', 300, refresh) }

  return {
    showError,
    showInfo,
    get badToken () { return badToken },
    refresh,
    streamState (s, detail) {
      const was = wsOpen
      wsOpen = s === 'open'
      wsRetryAt = s === 'closed' ? Date.now() + (detail?.retryInMs ?? 0) : wsRetryAt
      updateBanner()
      return s === 'open' && !was
    },
    setJoining (id) {
      joining = id
      updateBanner()
    },
    events: {
      hello: msg => { store.did = String(msg.did) },
      error: msg => { showError('peer', new ApiError(0, String(msg.error), String(msg.message))) },
      'peer:connect': peersChanged,
      'peer:disconnect': peersChanged,
      'peer:identified': peersChanged
    }
  }
}
