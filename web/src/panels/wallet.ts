// The wallet: balance and address, faucet, pay, each transaction's status, our assets and parcels,
// each of them checked in the browser against the validators' signed commit (wallet-verify.ts).
import { ApiError, type Api } from '../api.ts'
import { $, h, parseAmount } from '../dom.ts'
import { debouncer } from '../events.ts'
import type { Panel, Report } from '../panel.ts'
import { shortDid, type Parcel } from '../scene.ts'
import type { Store } from '../store.ts'
import type { LightClient, ListedAsset, ListedParcel, WalletCheck } from './wallet-verify.ts'

/** How often and how long a pending transaction's status is asked for. */
export const TX_POLL_MS = 1000
export const TX_POLL_GIVE_UP_MS = 120_000
/** Transactions listed at most. */
export const MAX_TX_SHOWN = 20

interface TxStatus { id?: string, status: 'pending' | 'committed' | 'rejected' | 'unknown', height?: number, error?: string, message?: string }
interface Tracked { id: string, what: string, li: HTMLLIElement, started: number, timer?: ReturnType<typeof setTimeout>, final: boolean }

export interface WalletContext {
  api: Pick<Api, 'get' | 'post'>
  store: Pick<Store, 'spaceId' | 'nameOf'>
  report: Pick<Report, 'showError'>
  /** An asset's place button: put its model in the space, in front of us. */
  placeModel: (cid: string) => void
}

export interface WalletPanel extends Panel {
  /** Balance, assets and parcels, asked again. */
  refresh: () => Promise<void>
  /** Asks again about every transaction not yet final. */
  pollPending: () => void
  /** Fills the pay form's address (a person's pay button). */
  payTo: (did: string) => void
  /** Whether what the wallet shows was verified, at which height, or the named error of the check that failed. */
  check: () => WalletCheck
}

export function mountWallet (ctx: WalletContext): WalletPanel {
  const { api, store, report } = ctx
  const txs = new Map<string, Tracked>()
  const debounce = debouncer()
  // The light client (hashing, signatures, DAG-CBOR) loads on first use, apart from the first frame's code.
  let light: Promise<{ client: LightClient, Mismatch: new (m: string) => Error }> | null = null
  const lightOf = async (): Promise<{ client: LightClient, Mismatch: new (m: string) => Error }> => {
    light ??= import('./wallet-verify.ts').then(m => ({ client: m.lightClient(api), Mismatch: m.ProofMismatchError }))
    return await light
  }
  let checked: WalletCheck = { verified: false, height: null }
  let checks = 0
  const verifyLine = h('div', { class: 'row small', id: 'wallet-verify', 'data-testid': 'wallet-verify', 'data-state': 'checking', text: 'checking…' })
  $('balance').parentElement?.after(verifyLine)

  function showCheck (c: WalletCheck): void {
    checked = c
    verifyLine.dataset.state = c.verified ? 'verified' : 'failed'
    verifyLine.classList.toggle('error', !c.verified)
    verifyLine.textContent = c.verified
      ? `✓ verified at height ${c.height ?? '?'}`
      : `✗ this peer's answer does not check: ${c.error ?? 'Error'}${c.message != null && c.message !== '' ? ` (${c.message})` : ''}`
  }

  /** Checks what was just shown; only the latest check's outcome is shown. */
  async function verify (b: { address: string, balance: string, height: number }, assets: ListedAsset[], parcels: ListedParcel[]): Promise<void> {
    const n = ++checks
    try {
      const { client, Mismatch } = await lightOf()
      const proven = await client.check(b.address, assets, parcels)
      if (proven.height === b.height && proven.balance !== b.balance) throw new Mismatch(`the peer says the balance is ${b.balance}; the chain says ${proven.balance} at height ${b.height}`)
      if (n !== checks) return
      $('balance').textContent = proven.balance
      showCheck({ verified: true, height: proven.height })
    } catch (err) {
      if (n !== checks || (err instanceof ApiError && err.code === 'PeerUnreachable')) return
      const e = err as Error
      showCheck({ verified: false, height: null, error: err instanceof ApiError ? err.code : e.name, message: e.message })
    }
  }

  async function refresh (): Promise<void> {
    try {
      const [b, assets, parcels] = await Promise.all([
        api.get<{ address: string, balance: string, nonce: number, height: number }>('/api/v0/ledger/balance'),
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
          place.addEventListener('click', () => { ctx.placeModel(a.content) })
          return h('li', { 'data-asset': a.id }, h('span', { title: a.content, text: `${a.name} ` }), place)
        })))
      $('parcels').replaceChildren(...(parcels.parcels.length === 0
        ? [h('li', { class: 'muted', text: 'no parcels' })]
        : parcels.parcels.map(p => h('li', { 'data-parcel': p.id, title: p.space, text: `parcel ${p.x},${p.y} ${p.w}×${p.h} in ${p.space === store.spaceId ? 'this space' : shortDid(p.space)}` }))))
      await verify(b, assets.assets, parcels.parcels)
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) report.showError('wallet', err)
    }
  }

  function track (id: string, what: string): Tracked {
    const li = h('li', { 'data-tx': id, 'data-status': 'pending' })
    const t: Tracked = { id, what, li, started: Date.now(), final: false }
    txs.set(id, t)
    $('tx-status').prepend(li)
    while ($('tx-status').children.length > MAX_TX_SHOWN) $('tx-status').lastElementChild?.remove()
    show(t, { status: 'pending' })
    t.timer = setTimeout(() => { void poll(t) }, TX_POLL_MS)
    return t
  }

  function show (t: Tracked, s: TxStatus): void {
    t.li.dataset.status = s.status
    const detail = s.status === 'committed'
      ? `final at height ${s.height ?? '?'}`
      : s.status === 'rejected'
        ? `rejected: ${s.error ?? 'Error'}${s.message != null && s.message !== '' ? ` (${s.message})` : ''}`
        : s.status === 'unknown' && Date.now() - t.started > TX_POLL_GIVE_UP_MS ? 'unknown (dropped?)' : 'pending…'
    t.li.replaceChildren(h('span', { text: `${t.what}: ` }), h('b', { class: 'tx-state', text: detail }), h('code', { class: 'muted', title: t.id, text: ` ${t.id.slice(0, 10)}…` }))
  }

  function finish (t: Tracked, s: TxStatus): void {
    if (t.final) return
    t.final = true
    clearTimeout(t.timer)
    show(t, s)
    void refresh()
  }

  async function poll (t: Tracked): Promise<void> {
    if (t.final) return
    clearTimeout(t.timer)
    try {
      const s = await api.get<TxStatus>(`/api/v0/ledger/tx/${encodeURIComponent(t.id)}`)
      if (s.status === 'committed' || s.status === 'rejected') { finish(t, s); return }
      show(t, s)
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) { report.showError('transaction', err) }
    }
    if (Date.now() - t.started < TX_POLL_GIVE_UP_MS && !t.final) t.timer = setTimeout(() => { void poll(t) }, TX_POLL_MS)
  }

  function pollPending (): void {
    for (const t of txs.values()) if (!t.final) void poll(t)
  }

  $('pay-form').addEventListener('submit', e => {
    e.preventDefault()
    const to = $<HTMLInputElement>('pay-to').value.trim()
    const amount = parseAmount($<HTMLInputElement>('pay-amount').value)
    if (to === '') { report.showError('pay', new Error('say whom to pay (a did:key address)')); return }
    if (amount == null) { report.showError('pay', new Error('the amount must be a whole number of units above 0')); return }
    const btn = $<HTMLButtonElement>('pay-send')
    btn.disabled = true
    void api.post<{ id: string }>('/api/v0/ledger/pay', { to, amount })
      .then(tx => {
        track(tx.id, `pay ${amount} to ${store.nameOf(to)}`)
        $<HTMLInputElement>('pay-amount').value = ''
      })
      .catch(err => { report.showError('pay', err) })
      .finally(() => { btn.disabled = false })
  })

  $('faucet').addEventListener('click', () => {
    const btn = $<HTMLButtonElement>('faucet')
    btn.disabled = true
    void api.post<{ id: string }>('/api/v0/ledger/faucet', {})
      .then(tx => { track(tx.id, 'faucet') })
      .catch(err => { report.showError('faucet', err) })
      .finally(() => { btn.disabled = false })
  })

  return {
    refresh,
    pollPending,
    check: () => ({ ...checked }),
    payTo (did) {
      $<HTMLInputElement>('pay-to').value = did
      $<HTMLInputElement>('pay-amount').focus()
    },
    events: {
      'ledger:block': () => {
        debounce('wallet', 200, refresh)
        pollPending()
      },
      'ledger:receipt': msg => {
        const t = txs.get(String(msg.tx))
        if (t == null) return
        finish(t, msg.ok === true
          ? { status: 'committed', height: Number(msg.height) }
          : { status: 'rejected', error: String(msg.error ?? 'Rejected'), message: String(msg.message ?? '') })
      }
    }
  }
}
