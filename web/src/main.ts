/**
 * The Peerverse browser client: a 3D view of a space and a side panel (people, chat, spaces,
 * wallet, building), talking only to this person's own peer through its local API and event
 * WebSocket. Wiring only: the view is scene.ts, walking controls.ts, smoothing interp.ts.
 */
import { Api, ApiError, EventStream, takeToken, type EventMessage } from './api.ts'
import { Controls } from './controls.ts'
import { $, formatTime, h, parseAmount, parseSpaceRef } from './dom.ts'
import type { Quat, Vec3 } from './interp.ts'
import { View, shortDid, type Grid, type Member, type Parcel, type WorldObject } from './scene.ts'

/** Our pose goes to the peer at most this often while we move (20 Hz). */
export const MOVE_SEND_INTERVAL_MS = 50
/** How often and how long a pending transaction's status is asked for. */
export const TX_POLL_MS = 1000
export const TX_POLL_GIVE_UP_MS = 120_000
/** Chat lines kept on screen. */
export const MAX_CHAT_LINES = 500
/** How long an error stays on screen. */
export const ERROR_SHOW_MS = 12_000

interface SpaceView {
  id: string
  name: string
  owner: string
  grid: Grid
  private: boolean
  policy: { editors: string[], banned: string[], muted: string[], members: string[] }
  members: number
  objects: number
}
interface ChatLine { id: string, author: string, text: string, ts: number }
interface TxStatus { id?: string, status: 'pending' | 'committed' | 'rejected' | 'unknown', height?: number, error?: string, message?: string }
interface Tracked { id: string, what: string, li: HTMLLIElement, started: number, timer?: ReturnType<typeof setTimeout>, final: boolean }

declare global {
  interface Window {
    peerverse?: Readonly<{
      avatars: () => Array<{ did: string, name: string, position: Vec3 }>
      objects: () => Array<{ id: string, model: string, loaded: boolean, failed: boolean, error?: string, position: Vec3, progress: number }>
      me: () => { position: Vec3, yaw: number, rotation: Quat }
      space: () => string | null
      did: () => string | null
      frames: () => number
    }>
  }
}

const banner = $('status-banner')
const token = takeToken()

if (token == null) {
  setBannerText('no-token', 'This page needs the link your peer printed (http://127.0.0.1:PORT/?token=…). Run `peerverse start` and open the "open:" URL it shows.')
} else {
  main(token)
}

function setBannerText (state: string, text: string): void {
  banner.dataset.state = state
  banner.textContent = text
  banner.hidden = state === 'ok'
}

function main (token: string): void {
  const api = new Api(token)
  const view = new View($<HTMLCanvasElement>('scene'), $('labels'), token)
  const controls = new Controls(view)
  const state = {
    did: null as string | null,
    wsOpen: false,
    badToken: false,
    wsRetryAt: 0,
    joining: null as string | null,
    peers: -1,
    spaceId: null as string | null,
    space: null as SpaceView | null,
    parcels: [] as Parcel[],
    people: new Map<string, { did: string, name: string }>(),
    chatIds: new Set<string>(),
    objects: [] as WorldObject[],
    txs: new Map<string, Tracked>(),
    lastSent: 0,
    dirty: false,
    loading: 0,
    failed: 0
  }

  let spaces: SpaceView[] = []
  const timers = new Map<string, ReturnType<typeof setTimeout>>()

  // -- the 3D view ------------------------------------------------------------------------------

  const viewEl = $('view')
  const canvas = view.canvas
  new ResizeObserver(() => { view.resize(canvas.clientWidth, canvas.clientHeight) }).observe(viewEl)
  view.resize(canvas.clientWidth, canvas.clientHeight)
  view.onFirstFrame = () => { performance.mark('peerverse:first-frame') }
  view.onLoadingChange = (loading, failed) => {
    state.loading = loading
    state.failed = failed
    const el = $('loading')
    el.hidden = loading === 0 && failed === 0
    el.dataset.loading = String(loading)
    el.dataset.failed = String(failed)
    el.textContent = [loading > 0 ? `Loading ${loading} model${loading === 1 ? '' : 's'} from the swarm…` : '', failed > 0 ? `${failed} failed to load` : ''].filter(Boolean).join(' · ')
    renderObjects()
  }
  view.onTick = dt => {
    if (state.space == null) return
    if (controls.update(dt)) state.dirty = true
    const now = performance.now()
    if (state.dirty && now - state.lastSent >= MOVE_SEND_INTERVAL_MS) sendPose(now)
  }
  controls.onClickView = (x, y, locked) => {
    const hit = view.pick(x, y)
    if (hit != null) {
      selectObject(hit)
      if (!locked) return
    }
    if (!locked) controls.lock()
    canvas.focus()
  }
  document.addEventListener('pointerlockchange', () => { $('hint').classList.toggle('locked', controls.locked) })
  view.start()

  function sendPose (now: number): void {
    if (state.spaceId == null) return
    const ok = events.send({ type: 'space:move', space: state.spaceId, position: [...view.me.position], rotation: view.myRotation() })
    if (ok) {
      state.lastSent = now
      state.dirty = false
    }
  }

  // -- errors and the banner --------------------------------------------------------------------

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
    if (state.badToken) {
      setBannerText('bad-token', 'Your peer refused this page\'s token (was it restarted with another data dir?): open the URL the peer printed again.')
    } else if (!state.wsOpen) {
      const secs = Math.max(0, Math.ceil((state.wsRetryAt - Date.now()) / 1000))
      setBannerText('connecting', state.wsRetryAt === 0 ? 'Connecting to your peer…' : `Not connected to your peer. Retrying${secs > 0 ? ` in ${secs}s` : ''}… (is \`peerverse start\` still running?)`)
    } else if (state.joining != null) {
      setBannerText('joining', 'Joining the space: looking for its members…')
    } else if (state.peers === 0) {
      setBannerText('no-peers', 'No other peers connected yet: you are on your own until someone joins or you bootstrap from a peer.')
    } else {
      setBannerText('ok', '')
    }
  }
  setInterval(() => { if (!state.wsOpen) updateBanner() }, 1000)

  async function refreshStatus (): Promise<void> {
    try {
      const s = await api.get<{ did: string, peers: string[] }>('/api/v0/status')
      state.did = s.did
      state.peers = s.peers.length
      state.badToken = false
      $('address').textContent = s.did
      $('address').title = s.did
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) state.badToken = true
      else if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) showError('status', err)
    }
    updateBanner()
  }

  // -- the event stream -------------------------------------------------------------------------

  let syncing: Promise<void> | null = null
  let syncAgain = false
  const events = new EventStream(api, {
    onState: (s, detail) => {
      const was = state.wsOpen
      state.wsOpen = s === 'open'
      state.wsRetryAt = s === 'closed' ? Date.now() + (detail?.retryInMs ?? 0) : state.wsRetryAt
      updateBanner()
      if (s === 'open' && !was) void resync()
    },
    onEvent: onEvent
  })
  events.start()
  void resync()

  /** At start and after each reconnect: everything we may have missed (one at a time). */
  async function resync (): Promise<void> {
    if (syncing != null) { syncAgain = true; return await syncing }
    syncing = (async () => {
      do {
        syncAgain = false
        await syncOnce()
      } while (syncAgain)
    })()
    try { await syncing } finally { syncing = null }
  }

  async function syncOnce (): Promise<void> {
    await refreshStatus()
    if (state.badToken) return
    void refreshWallet()
    await refreshSpaces()
    if (state.spaceId != null) await loadSpace(state.spaceId)
    else await pickInitialSpace()
    for (const t of state.txs.values()) if (!t.final) void pollTx(t)
    state.dirty = true
  }

  function onEvent (msg: EventMessage): void {
    const space = typeof msg.space === 'string' ? msg.space : undefined
    switch (msg.type) {
      case 'hello':
        state.did = String(msg.did)
        return
      case 'error':
        showError('peer', new ApiError(0, String(msg.error), String(msg.message)))
        return
      case 'peer:connect': case 'peer:disconnect': case 'peer:identified':
        debounce('status', 300, refreshStatus)
        return
      case 'space:presence': {
        if (space !== state.spaceId || msg.did === state.did) return
        const m = msg as unknown as Member
        view.upsertMember(m)
        const had = state.people.get(m.did)
        if (had == null || had.name !== m.name) {
          state.people.set(m.did, { did: m.did, name: m.name })
          renderPeople()
        }
        return
      }
      case 'space:leave':
        if (space !== state.spaceId) return
        view.removeMember(String(msg.did))
        state.people.delete(String(msg.did))
        renderPeople()
        return
      case 'space:chat':
        if (space === state.spaceId) addChat(msg as unknown as ChatLine)
        return
      case 'space:world':
        if (space === state.spaceId) debounce('objects', 80, refreshObjects)
        return
      case 'space:policy':
        if (space === state.spaceId && state.space != null) {
          state.space.policy = msg.policy as SpaceView['policy']
          updateEditHint()
        }
        return
      case 'ledger:block':
        debounce('wallet', 200, refreshWallet)
        if (state.spaceId != null) debounce('parcels', 500, refreshParcels)
        for (const t of state.txs.values()) if (!t.final) void pollTx(t)
        return
      case 'ledger:receipt': {
        const t = state.txs.get(String(msg.tx))
        if (t != null) {
          finishTx(t, msg.ok === true
            ? { status: 'committed', height: Number(msg.height) }
            : { status: 'rejected', error: String(msg.error ?? 'Rejected'), message: String(msg.message ?? '') })
        }
      }
    }
  }

  function debounce (key: string, ms: number, fn: () => Promise<void> | void): void {
    if (timers.has(key)) return
    timers.set(key, setTimeout(() => { timers.delete(key); void fn() }, ms))
  }

  // -- spaces -----------------------------------------------------------------------------------

  async function refreshSpaces (): Promise<void> {
    try {
      spaces = (await api.get<{ spaces: SpaceView[] }>('/api/v0/space')).spaces
    } catch (err) {
      showError('spaces', err)
    }
    renderSpaces()
  }

  function renderSpaces (): void {
    const ul = $('spaces')
    ul.replaceChildren(...spaces.map(s => {
      const go = h('button', { type: 'button', class: 'link', 'data-space': s.id, text: s.name + (s.private ? ' 🔒' : '') })
      go.addEventListener('click', () => { void enterSpace(s.id) })
      const leave = h('button', { type: 'button', class: 'small', 'data-leave': s.id, title: 'Leave this space', text: 'leave' })
      leave.addEventListener('click', () => { void leaveSpace(s.id) })
      return h('li', { class: s.id === state.spaceId ? 'current' : undefined, 'data-space': s.id }, go, h('span', { class: 'muted', text: ` ${s.members} here` }), leave)
    }))
    if (spaces.length === 0) ul.append(h('li', { class: 'muted', text: 'You are in no space yet.' }))
  }

  function hashSpace (): string | undefined {
    return parseSpaceRef(location.hash)
  }

  async function pickInitialSpace (): Promise<void> {
    const fromLink = hashSpace()
    if (fromLink != null) { await enterSpace(fromLink); return }
    if (spaces.length > 0) { await enterSpace(spaces[0].id); return }
    showEmpty()
  }

  /** The view's placeholder text: no WebGL, or no space yet. */
  function showEmpty (): void {
    const el = $('empty-space')
    el.hidden = state.spaceId != null && view.renderer != null
    el.textContent = view.renderer == null
      ? `This browser gives no WebGL (${view.webglError ?? 'unavailable'}): the 3D view is off, the panel still works.`
      : 'Create or join a space in the panel to step in.'
  }
  showEmpty()

  window.addEventListener('hashchange', () => {
    const id = hashSpace()
    if (id != null && id !== state.spaceId) void enterSpace(id)
  })

  /** Joins (when not yet a member) and shows a space. */
  async function enterSpace (id: string, options: { name?: string } = {}): Promise<void> {
    if (!spaces.some(s => s.id === id) || options.name != null) {
      state.joining = id
      updateBanner()
      try {
        await api.post('/api/v0/space/join', { space: id, ...(options.name != null ? { name: options.name } : {}) })
      } catch (err) {
        showError('join', err)
        return
      } finally {
        state.joining = null
        updateBanner()
      }
      await refreshSpaces()
    }
    await loadSpace(id)
  }

  async function leaveSpace (id: string): Promise<void> {
    try {
      await api.post('/api/v0/space/leave', { space: id })
    } catch (err) {
      showError('leave', err)
    }
    await refreshSpaces()
    if (state.spaceId === id) {
      state.spaceId = null
      state.space = null
      view.clearMembers()
      view.setObjects([])
      view.setParcels([], '')
      state.people.clear()
      renderPeople()
      $('chat-log').replaceChildren()
      $('space-name').textContent = '—'
      $('space-id').textContent = ''
      history.replaceState(history.state, '', location.pathname + location.search)
      if (spaces.length > 0) await enterSpace(spaces[0].id)
      else showEmpty()
    }
  }

  async function loadSpace (id: string): Promise<void> {
    let sv: SpaceView
    try {
      sv = await api.get<SpaceView>(`/api/v0/space/${encodeURIComponent(id)}`)
    } catch (err) {
      showError('space', err)
      return
    }
    const switched = state.spaceId !== id
    state.spaceId = id
    state.space = sv
    showEmpty()
    $('space-name').textContent = sv.name
    $('space-id').textContent = id
    $('space-id').title = id
    if (hashSpace() !== id) history.replaceState(history.state, '', `${location.pathname}${location.search}#space=${encodeURIComponent(id)}`)
    view.setGrid(sv.grid)
    if (switched) {
      // Where the peer puts a newcomer, until `who` tells us where we stand.
      view.me.position = [sv.grid.width / 2, 0, sv.grid.depth / 2]
      view.clearMembers()
      state.people.clear()
      state.chatIds.clear()
      $('chat-log').replaceChildren()
      view.select(undefined)
      updateSelected()
    }
    renderSpaces()
    const [who, chat] = await Promise.all([
      api.get<{ members: Member[] }>(`/api/v0/space/${encodeURIComponent(id)}/who`).catch(err => { showError('people', err); return { members: [] } }),
      api.get<{ chat: ChatLine[] }>(`/api/v0/space/${encodeURIComponent(id)}/chat`).catch(err => { showError('chat', err); return { chat: [] } }),
      refreshObjects(),
      refreshParcels()
    ])
    if (state.spaceId !== id) return
    state.people.clear()
    for (const m of who.members) {
      state.people.set(m.did, { did: m.did, name: m.name })
      if (m.did === state.did) {
        if (switched) {
          view.me.position = [...m.position]
          const q = m.rotation
          view.me.yaw = Math.atan2(2 * (q[3] * q[1] + q[0] * q[2]), 1 - 2 * (q[1] * q[1] + q[0] * q[0]))
          view.me.pitch = 0
        }
      } else {
        view.upsertMember(m)
      }
    }
    renderPeople()
    for (const c of chat.chat) addChat(c)
    updateEditHint()
    state.dirty = true
  }

  $('create-form').addEventListener('submit', e => {
    e.preventDefault()
    const name = $<HTMLInputElement>('create-name').value.trim()
    if (name === '') { showError('create', new Error('give the space a name')); return }
    const displayName = $<HTMLInputElement>('join-name').value.trim()
    void (async () => {
      try {
        const sv = await api.post<SpaceView>('/api/v0/space/create', { name, private: $<HTMLInputElement>('create-private').checked, ...(displayName !== '' ? { displayName } : {}) })
        $<HTMLInputElement>('create-name').value = ''
        await refreshSpaces()
        await loadSpace(sv.id)
      } catch (err) {
        showError('create', err)
      }
    })()
  })

  $('join-form').addEventListener('submit', e => {
    e.preventDefault()
    const id = parseSpaceRef($<HTMLInputElement>('join-id').value)
    if (id == null) { showError('join', new Error('paste a space id or a link with #space=…')); return }
    const name = $<HTMLInputElement>('join-name').value.trim()
    void enterSpace(id, name !== '' ? { name } : {}).then(() => { if (state.spaceId === id) $<HTMLInputElement>('join-id').value = '' })
  })

  $('space-copy').addEventListener('click', () => {
    if (state.spaceId == null) return
    // The link carries no token: whoever gets it pastes it into their own client's join box
    // (or opens it, when their peer runs on the same address and their tab holds its token).
    const link = `${location.origin}/#space=${state.spaceId}`
    navigator.clipboard?.writeText(link).then(() => { showInfo(`copied ${link}`) }, () => { showInfo(link) }) ?? showInfo(link)
  })

  // -- people -----------------------------------------------------------------------------------

  function renderPeople (): void {
    const list = [...state.people.values()].sort((a, b) => (a.did === state.did ? -1 : b.did === state.did ? 1 : (a.name || a.did).localeCompare(b.name || b.did)))
    $('people-count').textContent = state.spaceId == null ? '' : `(${list.length})`
    $('people').replaceChildren(...list.map(p => {
      const me = p.did === state.did
      const li = h('li', { 'data-did': p.did, class: me ? 'me' : undefined }, h('span', { class: 'name', title: p.did, text: (p.name !== '' ? p.name : shortDid(p.did)) + (me ? ' (you)' : '') }))
      if (!me) {
        const pay = h('button', { type: 'button', class: 'small', 'data-pay': p.did, text: 'pay' })
        pay.addEventListener('click', () => {
          $<HTMLInputElement>('pay-to').value = p.did
          $<HTMLInputElement>('pay-amount').focus()
        })
        li.append(pay)
      }
      return li
    }))
    if (list.length === 1 && state.spaceId != null) $('people').append(h('li', { class: 'muted', text: 'Nobody else here yet.' }))
  }

  // -- chat -------------------------------------------------------------------------------------

  function nameOf (did: string): string {
    const p = state.people.get(did)
    return p != null && p.name !== '' ? p.name : did === state.did ? 'you' : shortDid(did)
  }

  function addChat (c: ChatLine): void {
    if (state.chatIds.has(c.id)) return
    state.chatIds.add(c.id)
    const log = $('chat-log')
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8
    log.append(h('li', { 'data-id': c.id, 'data-author': c.author, class: c.author === state.did ? 'mine' : undefined },
      h('time', { text: formatTime(c.ts) }), h('b', { title: c.author, text: nameOf(c.author) }), h('span', { class: 'text', text: c.text })))
    while (log.children.length > MAX_CHAT_LINES) log.firstElementChild?.remove()
    if (stick) log.scrollTop = log.scrollHeight
  }

  $('chat-form').addEventListener('submit', e => {
    e.preventDefault()
    const input = $<HTMLInputElement>('chat-input')
    const text = input.value.trim()
    if (text === '' || state.spaceId == null) return
    const send = $<HTMLButtonElement>('chat-send')
    send.disabled = true
    void api.post<ChatLine>('/api/v0/space/say', { space: state.spaceId, text })
      .then(c => { input.value = ''; addChat(c) })
      .catch(err => { showError('chat', err) })
      .finally(() => { send.disabled = false; input.focus() })
  })

  // -- wallet -----------------------------------------------------------------------------------

  async function refreshWallet (): Promise<void> {
    try {
      const [b, assets, parcels] = await Promise.all([
        api.get<{ address: string, balance: string, nonce: number }>('/api/v0/ledger/balance'),
        api.get<{ assets: Array<{ id: string, name: string, content: string }> }>('/api/v0/ledger/assets'),
        api.get<{ parcels: Parcel[] }>('/api/v0/ledger/parcels')
      ])
      $('balance').textContent = b.balance
      $('balance').dataset.balance = b.balance
      $('address').textContent = b.address
      $('assets').replaceChildren(...(assets.assets.length === 0
        ? [h('li', { class: 'muted', text: 'no assets' })]
        : assets.assets.map(a => {
          const place = h('button', { type: 'button', class: 'small', text: 'place' })
          place.addEventListener('click', () => { $<HTMLInputElement>('place-cid').value = a.content; void placeModel(a.content) })
          return h('li', { 'data-asset': a.id }, h('span', { title: a.content, text: `${a.name} ` }), place)
        })))
      $('parcels').replaceChildren(...(parcels.parcels.length === 0
        ? [h('li', { class: 'muted', text: 'no parcels' })]
        : parcels.parcels.map(p => h('li', { 'data-parcel': p.id, title: p.space, text: `parcel ${p.x},${p.y} ${p.w}×${p.h} in ${p.space === state.spaceId ? 'this space' : shortDid(p.space)}` }))))
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) showError('wallet', err)
    }
  }

  function track (id: string, what: string): Tracked {
    const li = h('li', { 'data-tx': id, 'data-status': 'pending' })
    const t: Tracked = { id, what, li, started: Date.now(), final: false }
    state.txs.set(id, t)
    $('tx-status').prepend(li)
    while ($('tx-status').children.length > 20) $('tx-status').lastElementChild?.remove()
    showTx(t, { status: 'pending' })
    t.timer = setTimeout(() => { void pollTx(t) }, TX_POLL_MS)
    return t
  }

  function showTx (t: Tracked, s: TxStatus): void {
    t.li.dataset.status = s.status
    const detail = s.status === 'committed'
      ? `final at height ${s.height ?? '?'}`
      : s.status === 'rejected'
        ? `rejected: ${s.error ?? 'Error'}${s.message != null && s.message !== '' ? ` (${s.message})` : ''}`
        : s.status === 'unknown' && Date.now() - t.started > TX_POLL_GIVE_UP_MS ? 'unknown (dropped?)' : 'pending…'
    t.li.replaceChildren(h('span', { text: `${t.what}: ` }), h('b', { class: 'tx-state', text: detail }), h('code', { class: 'muted', title: t.id, text: ` ${t.id.slice(0, 10)}…` }))
  }

  function finishTx (t: Tracked, s: TxStatus): void {
    if (t.final) return
    t.final = true
    clearTimeout(t.timer)
    showTx(t, s)
    void refreshWallet()
  }

  async function pollTx (t: Tracked): Promise<void> {
    if (t.final) return
    clearTimeout(t.timer)
    try {
      const s = await api.get<TxStatus>(`/api/v0/ledger/tx/${encodeURIComponent(t.id)}`)
      if (s.status === 'committed' || s.status === 'rejected') { finishTx(t, s); return }
      showTx(t, s)
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) { showError('transaction', err) }
    }
    if (Date.now() - t.started < TX_POLL_GIVE_UP_MS && !t.final) t.timer = setTimeout(() => { void pollTx(t) }, TX_POLL_MS)
  }

  $('pay-form').addEventListener('submit', e => {
    e.preventDefault()
    const to = $<HTMLInputElement>('pay-to').value.trim()
    const amount = parseAmount($<HTMLInputElement>('pay-amount').value)
    if (to === '') { showError('pay', new Error('say whom to pay (a did:key address)')); return }
    if (amount == null) { showError('pay', new Error('the amount must be a whole number of units above 0')); return }
    const btn = $<HTMLButtonElement>('pay-send')
    btn.disabled = true
    void api.post<{ id: string }>('/api/v0/ledger/pay', { to, amount })
      .then(tx => {
        track(tx.id, `pay ${amount} to ${nameOf(to)}`)
        $<HTMLInputElement>('pay-amount').value = ''
      })
      .catch(err => { showError('pay', err) })
      .finally(() => { btn.disabled = false })
  })

  $('faucet').addEventListener('click', () => {
    const btn = $<HTMLButtonElement>('faucet')
    btn.disabled = true
    void api.post<{ id: string }>('/api/v0/ledger/faucet', {})
      .then(tx => { track(tx.id, 'faucet') })
      .catch(err => { showError('faucet', err) })
      .finally(() => { btn.disabled = false })
  })

  // -- building ---------------------------------------------------------------------------------

  async function refreshObjects (): Promise<void> {
    const id = state.spaceId
    if (id == null) return
    try {
      const { objects } = await api.get<{ objects: WorldObject[] }>(`/api/v0/space/${encodeURIComponent(id)}/objects`)
      if (state.spaceId !== id) return
      state.objects = objects
      view.setObjects(objects)
      updateSelected()
      renderObjects()
    } catch (err) {
      showError('objects', err)
    }
  }

  async function refreshParcels (): Promise<void> {
    const id = state.spaceId
    if (id == null) return
    try {
      const { parcels } = await api.get<{ parcels: Parcel[] }>(`/api/v0/ledger/parcels-in/${encodeURIComponent(id)}`)
      if (state.spaceId !== id) return
      const changed = JSON.stringify(parcels) !== JSON.stringify(state.parcels)
      state.parcels = parcels
      if (changed) { view.setParcels(parcels, state.did ?? ''); updateEditHint() }
    } catch (err) {
      showError('parcels', err)
    }
  }

  function renderObjects (): void {
    const status = new Map(view.objectList().map(o => [o.id, o]))
    $('objects').replaceChildren(...state.objects.map(o => {
      const s = status.get(o.id)
      const what = s?.failed === true ? 'failed to load' : s?.loaded === true ? 'loaded' : 'loading'
      const b = h('button', { type: 'button', class: 'link', 'data-object': o.id, text: `${o.model.slice(0, 12)}… @ ${o.position.map(v => v.toFixed(0)).join(',')}` })
      b.addEventListener('click', () => { selectObject(o.id) })
      const li = h('li', { 'data-object': o.id, 'data-state': what, class: o.id === view.selected ? 'current' : undefined }, b, h('span', { class: `muted state-${what.split(' ')[0]}`, title: s?.error ?? '', text: ` ${what}` }))
      if (s?.failed === true) {
        const retry = h('button', { type: 'button', class: 'small', text: 'retry' })
        retry.addEventListener('click', () => { view.retry(o.id) })
        li.append(retry)
      }
      return li
    }))
  }

  function selectObject (id: string | undefined): void {
    view.select(id)
    updateSelected()
    renderObjects()
  }

  function updateSelected (): void {
    const id = view.selected
    $('selected').textContent = id ?? 'none'
    $<HTMLButtonElement>('obj-move').disabled = id == null
    $<HTMLButtonElement>('obj-remove').disabled = id == null
  }

  function updateEditHint (): void {
    const sv = state.space
    const el = $('edit-hint')
    if (sv == null) { el.textContent = ''; return }
    const me = state.did ?? ''
    const mine = state.parcels.filter(p => p.owner === me).length
    el.dataset.role = sv.owner === me ? 'owner' : sv.policy.editors.includes(me) ? 'editor' : mine > 0 ? 'parcel' : 'visitor'
    el.textContent = sv.owner === me
      ? 'You own this space: you can build anywhere.'
      : sv.policy.editors.includes(me)
        ? 'You are an editor here: you can build anywhere.'
        : mine > 0
          ? `You can build inside your ${mine} parcel${mine === 1 ? '' : 's'} (yellow).`
          : 'Only the owner, its editors and parcel owners build here: your edits would be refused.'
  }

  async function placeModel (cid: string): Promise<void> {
    if (state.spaceId == null) { showError('place', new Error('enter a space first')); return }
    try {
      const { id } = await api.post<{ id: string }>('/api/v0/space/object/place', { space: state.spaceId, model: cid, position: view.spotAhead(3), rotation: view.myRotation() })
      await refreshObjects()
      selectObject(id)
    } catch (err) {
      showError('place', err)
    }
  }

  $('place-form').addEventListener('submit', e => {
    e.preventDefault()
    const cid = $<HTMLInputElement>('place-cid').value.trim()
    if (cid === '') { showError('place', new Error('give the CID of a glTF or GLB model')); return }
    void placeModel(cid)
  })

  $<HTMLInputElement>('upload-file').addEventListener('change', () => {
    const input = $<HTMLInputElement>('upload-file')
    const file = input.files?.[0]
    if (file == null) return
    const status = $('upload-status')
    if (!/\.(glb|gltf)$/i.test(file.name)) { showError('upload', new Error('choose a .glb or .gltf file')); return }
    status.textContent = `adding ${file.name}…`
    void api.addContent(file, file.name)
      .then(async ({ cid }) => {
        status.textContent = `added ${cid.slice(0, 14)}…`
        status.title = cid
        $<HTMLInputElement>('place-cid').value = cid
        await placeModel(cid)
      })
      .catch(err => { status.textContent = ''; showError('upload', err) })
      .finally(() => { input.value = '' })
  })

  $('obj-move').addEventListener('click', () => {
    const id = view.selected
    if (id == null || state.spaceId == null) return
    void api.post('/api/v0/space/object/move', { space: state.spaceId, id, position: view.spotAhead(3) })
      .then(refreshObjects)
      .catch(err => { showError('move', err) })
  })

  $('obj-remove').addEventListener('click', () => {
    const id = view.selected
    if (id == null || state.spaceId == null) return
    void api.post('/api/v0/space/object/remove', { space: state.spaceId, id })
      .then(async () => { selectObject(undefined); await refreshObjects() })
      .catch(err => { showError('remove', err) })
  })

  // -- the debug hook (read-only views for tests) -------------------------------------------------

  window.peerverse = Object.freeze({
    avatars: () => view.avatarList(),
    objects: () => view.objectList(),
    me: () => ({ position: [...view.me.position] as Vec3, yaw: view.me.yaw, rotation: view.myRotation() }),
    space: () => state.spaceId,
    did: () => state.did,
    frames: () => view.frames
  })
}
