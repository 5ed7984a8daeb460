/**
 * Land and minting: the space shown as the ledger knows it (its owner, the price per cell, the
 * owner's grants and the parcels, with who holds them), a form to claim a parcel (by default the
 * 4 x 4 cells around where we stand), the owner's tools (grant a rectangle to a person, revoke a
 * grant, set or end the price), and a form to mint an asset from a content CID or a file added
 * through the peer. Each transaction is followed until it is final ("final at height H", from our
 * peer's receipt event or by asking for its status) or refused, and a refusal shows the ledger's
 * own error name (NotGrantedError, OutsideSpaceError, PriceAboveLimitError...). Input the ledger
 * would refuse as malformed is refused here first, with a named error, before anything is signed;
 * the rules themselves (who may claim where) are the ledger's alone: the page only says what it
 * expects.
 */
import { ApiError, type Api } from '../api.ts'
import { h } from '../dom.ts'
import { debouncer } from '../events.ts'
import type { Panel, Report, SpaceLoader } from '../panel.ts'
import { shortDid, type Parcel, type View } from '../scene.ts'
import type { Store } from '../store.ts'
import { MAX_ASSET_NAME_LENGTH, MAX_GRID, MAX_LAND_PRICE, MAX_PARCEL_SIDE } from './land-limits.ts'
import { parseCidText } from './timeline.ts'
import { TX_POLL_GIVE_UP_MS, TX_POLL_MS } from './wallet.ts'

/** Side of the parcel the claim form proposes around where we stand. */
export const DEFAULT_CLAIM_SIDE = 4
/** Transactions the panel lists at most. */
export const MAX_LAND_TX_SHOWN = 10

/** A parcel coordinate or side that is not a whole number in the ledger's range. */
export class InvalidParcelError extends Error {
  name = 'InvalidParcelError'
}
/** A parcel side over the ledger's MAX_PARCEL_SIDE. */
export class ParcelTooLargeError extends Error {
  name = 'ParcelTooLargeError'
}
/** A rectangle that runs off the space's grid (the ledger's error of the same name). */
export class OutsideSpaceError extends Error {
  name = 'OutsideSpaceError'
}
/** A price that is not a whole number in 0..MAX_LAND_PRICE. */
export class InvalidPriceError extends Error {
  name = 'InvalidPriceError'
}
/** A grantee that is not a did:key. */
export class InvalidGranteeError extends Error {
  name = 'InvalidGranteeError'
}
/** An asset name that is empty or longer than the ledger's MAX_NAME_LENGTH. */
export class InvalidAssetNameError extends Error {
  name = 'InvalidAssetNameError'
}
/** A transaction the ledger refused: its name is the ledger's error's. */
class RefusedError extends Error {
  constructor (name: string, message: string) {
    super(message)
    this.name = name
  }
}

export interface Rect { x: number, y: number, w: number, h: number }
export interface Grant extends Rect { id: string, space: string, grantee: string }
/** GET /api/v0/ledger/land/:space. */
interface LandAnswer { space: string, known: boolean, owner?: string, width?: number, depth?: number, price?: string, grants: Grant[], parcels: Parcel[] }
interface TxStatus { status: 'pending' | 'committed' | 'rejected' | 'unknown', height?: number, error?: string, message?: string, receipt?: { created?: string } }
interface Tracked { id: string, kind: string, what: string, status: TxStatus['status'], height?: number, error?: string, created?: string, li: HTMLLIElement, started: number, timer?: ReturnType<typeof setTimeout> }

/** What `window.peerverse.land()` gives: the space's land as last shown, and our land transactions. */
export interface LandHookView {
  space: string | null
  known: boolean
  owner: string | null
  price: string | null
  grants: Grant[]
  parcels: Parcel[]
  /** The ledger height the land shown was read at. */
  height: number
  txs: Array<{ id: string, kind: string, status: string, height?: number, error?: string, created?: string }>
}

/** A whole number typed by a person, in lo..hi; InvalidParcelError otherwise. */
function whole (text: string, what: string, lo: number, hi: number): number {
  const t = text.trim()
  if (!/^\d{1,8}$/.test(t)) throw new InvalidParcelError(`${what} must be a whole number, not "${t.slice(0, 20)}"`)
  const n = Number(t)
  if (n < lo || n > hi) throw new InvalidParcelError(`${what} must be in ${lo}..${hi}`)
  return n
}

/** A rectangle as typed, checked against the ledger's limits and the space's grid (when known). */
export function parseRect (fields: { x: string, y: string, w: string, h: string }, grid?: { width: number, depth: number }): Rect {
  const x = whole(fields.x, 'x', 0, MAX_GRID - 1)
  const y = whole(fields.y, 'y', 0, MAX_GRID - 1)
  const w = whole(fields.w, 'w', 1, Number.MAX_SAFE_INTEGER)
  const h = whole(fields.h, 'h', 1, Number.MAX_SAFE_INTEGER)
  if (w > MAX_PARCEL_SIDE || h > MAX_PARCEL_SIDE) throw new ParcelTooLargeError(`a parcel's sides are at most ${MAX_PARCEL_SIDE} cells (this one is ${w} x ${h})`)
  if (x + w > MAX_GRID || y + h > MAX_GRID) throw new OutsideSpaceError(`a parcel must lie within the ${MAX_GRID}-cell grid`)
  if (grid != null && (x + w > grid.width || y + h > grid.depth)) throw new OutsideSpaceError(`${w} x ${h} at ${x},${y} runs off this space's ${grid.width} x ${grid.depth} grid`)
  return { x, y, w, h }
}

/** A price per cell as typed (empty: 0), in 0..MAX_LAND_PRICE; InvalidPriceError otherwise. */
export function parsePrice (text: string, what = 'the price'): bigint {
  const t = text.trim().replace(/[_\s]/g, '')
  if (t === '') return 0n
  if (!/^\d{1,19}$/.test(t)) throw new InvalidPriceError(`${what} must be a whole number of units per cell`)
  const n = BigInt(t)
  if (n > MAX_LAND_PRICE) throw new InvalidPriceError(`${what} is at most ${MAX_LAND_PRICE} a cell`)
  return n
}

/** A did:key as pasted; InvalidGranteeError otherwise. */
export function parseGrantee (text: string): string {
  const t = text.trim()
  if (!/^did:key:z[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(t)) throw new InvalidGranteeError(`grant to whom? "${t.slice(0, 30)}" is not a did:key address`)
  return t
}

/** An asset name as typed: 1..MAX_ASSET_NAME_LENGTH characters; InvalidAssetNameError otherwise. */
export function parseAssetName (text: string): string {
  const t = text.trim()
  if (t.length === 0 || t.length > MAX_ASSET_NAME_LENGTH) throw new InvalidAssetNameError(`an asset's name is 1..${MAX_ASSET_NAME_LENGTH} characters`)
  return t
}

const contains = (g: Rect, r: Rect): boolean => r.x >= g.x && r.y >= g.y && r.x + r.w <= g.x + g.w && r.y + r.h <= g.y + g.h

export interface LandContext {
  api: Pick<Api, 'get' | 'post' | 'addContent'>
  store: Pick<Store, 'did' | 'spaceId' | 'space' | 'on' | 'people' | 'nameOf'>
  view: Pick<View, 'me'>
  report: Pick<Report, 'showError'>
}

export interface LandPanel extends Panel, SpaceLoader {
  /** The land shown and our land transactions, for tests. */
  hook: () => LandHookView
}

export function mountLand (ctx: LandContext): LandPanel {
  const { api, store, view, report } = ctx
  const debounce = debouncer()
  const txs = new Map<string, Tracked>()
  let land: LandAnswer | null = null
  let height = 0

  const input = (id: string, attrs: Record<string, string> = {}): HTMLInputElement => h('input', { id, 'data-testid': id, autocomplete: 'off', ...attrs })
  const rectInputs = (prefix: string): Record<'x' | 'y' | 'w' | 'h', HTMLInputElement> => ({
    x: input(`${prefix}-x`, { placeholder: 'x', inputmode: 'numeric', 'aria-label': 'x (cells along the width)' }),
    y: input(`${prefix}-y`, { placeholder: 'y', inputmode: 'numeric', 'aria-label': 'y (cells along the depth)' }),
    w: input(`${prefix}-w`, { placeholder: 'w', inputmode: 'numeric', 'aria-label': 'width in cells' }),
    h: input(`${prefix}-h`, { placeholder: 'h', inputmode: 'numeric', 'aria-label': 'depth in cells' })
  })
  const button = (id: string, text: string, type = 'submit'): HTMLButtonElement => h('button', { id, 'data-testid': id, type, text })

  const info = h('div', { id: 'land-info', 'data-testid': 'land-info', class: 'small' })
  const grantList = h('ul', { id: 'land-grants', 'data-testid': 'land-grants', class: 'list small' })
  const parcelList = h('ul', { id: 'land-parcels', 'data-testid': 'land-parcels', class: 'list small' })
  const txList = h('ul', { id: 'land-tx', 'data-testid': 'land-tx', class: 'list small' })

  const claim = rectInputs('land')
  const maxPrice = input('land-max-price', { placeholder: 'max price a cell', inputmode: 'numeric', 'aria-label': 'the most you agree to pay a cell' })
  const cost = h('p', { id: 'land-cost', 'data-testid': 'land-cost', class: 'small muted' })
  const here = button('land-here', 'Here', 'button')
  const claimForm = h('form', { id: 'land-claim-form', class: 'land-form' },
    h('div', { class: 'row land-rect' }, claim.x, claim.y, claim.w, claim.h, here),
    h('div', { class: 'row' }, maxPrice, button('land-claim', 'Claim')), cost)

  const grantPerson = h('select', { id: 'land-grant-person', 'data-testid': 'land-grant-person', 'aria-label': 'a person here' })
  const grantTo = input('land-grant-to', { placeholder: 'or paste did:key:…' })
  const grantRect = rectInputs('land-grant')
  const grantForm = h('form', { id: 'land-grant-form', class: 'land-form' },
    h('div', { class: 'row' }, grantPerson, grantTo),
    h('div', { class: 'row land-rect' }, grantRect.x, grantRect.y, grantRect.w, grantRect.h, button('land-grant-send', 'Grant')))
  const priceInput = input('land-price-input', { placeholder: 'price a cell', inputmode: 'numeric', 'aria-label': 'price a cell' })
  const priceClear = button('land-price-clear', 'Not for sale', 'button')
  const priceForm = h('form', { id: 'land-price-form', class: 'row' }, priceInput, button('land-price-send', 'Set price'), priceClear)
  const ownerBox = h('div', { id: 'land-owner', 'data-testid': 'land-owner', hidden: true },
    h('p', { class: 'small muted', text: 'Owner of this space: grant land to a person, or sell it at a price a cell (paid to you).' }), grantForm, priceForm)

  const mintCid = input('land-mint-cid', { placeholder: 'Content CID' })
  const mintName = input('land-mint-name', { placeholder: 'Name' })
  const mintFile = input('land-mint-file', { type: 'file', 'aria-label': 'a file to mint' })
  const mintStatus = h('span', { id: 'land-mint-status', 'data-testid': 'land-mint-status', class: 'small' })
  const minted = h('p', { id: 'land-minted', 'data-testid': 'land-minted', class: 'small' })
  const mintForm = h('form', { id: 'land-mint-form', class: 'land-form' },
    h('div', { class: 'row' }, mintCid, mintName, button('land-mint-send', 'Mint')),
    h('div', { class: 'row' }, h('label', { class: 'file' }, 'or add a file ', mintFile), mintStatus), minted)

  document.getElementById('sec-land')?.append(
    h('h2', { id: 'h-land', text: 'Land' }), info, h('h3', { text: 'Grants' }), grantList, h('h3', { text: 'Parcels' }), parcelList,
    h('h3', { text: 'Claim a parcel' }), claimForm, ownerBox, h('h3', { text: 'Mint an asset' }), mintForm, txList)

  const me = (): string => store.did ?? ''
  const grid = (): { width: number, depth: number } | undefined =>
    land?.known === true && land.width != null && land.depth != null ? { width: land.width, depth: land.depth } : store.space?.grid
  const ownerOf = (): string | undefined => land?.known === true ? land.owner : store.space?.owner
  const priceOf = (): bigint => land?.known === true && land.price != null ? BigInt(land.price) : 0n

  /** The 4 x 4 cells around where we stand, inside the grid. */
  function fillHere (rect: Record<'x' | 'y' | 'w' | 'h', HTMLInputElement>): void {
    const g = grid() ?? { width: 256, depth: 256 }
    const side = Math.min(DEFAULT_CLAIM_SIDE, g.width, g.depth)
    const at = (v: number, max: number): number => Math.max(0, Math.min(max - side, Math.floor(v) - Math.floor(side / 2)))
    rect.x.value = String(at(view.me.position[0], g.width))
    rect.y.value = String(at(view.me.position[2], g.depth))
    rect.w.value = rect.h.value = String(side)
    updateCost()
  }

  function render (): void {
    const owner = ownerOf()
    const mine = owner != null && owner === me()
    info.dataset.known = String(land?.known === true)
    info.dataset.owner = owner ?? ''
    info.dataset.price = land?.known === true ? String(land.price ?? '0') : ''
    info.replaceChildren(...(store.spaceId == null
      ? [h('span', { class: 'muted', text: 'Enter a space to see its land.' })]
      : [
          h('div', {}, h('span', { class: 'label', text: 'Owner: ' }), h('span', { id: 'land-owner-name', title: owner ?? '', text: owner == null ? '?' : mine ? 'you' : store.nameOf(owner) })),
          h('div', {}, h('span', { class: 'label', text: 'Price: ' }), h('span', { id: 'land-price', 'data-testid': 'land-price', text: priceOf() === 0n ? 'not for sale' : `${priceOf()} a cell` })),
          ...(land?.known === true ? [] : [h('div', { class: 'muted', text: 'Not on the ledger yet: its first land transaction proves it.' })])
        ]))
    const grants = land?.grants ?? []
    grantList.replaceChildren(...(grants.length === 0
      ? [h('li', { class: 'muted', text: 'no grants' })]
      : grants.map(g => {
        const li = h('li', { 'data-grant': g.id, 'data-grantee': g.grantee }, h('span', { title: g.grantee, text: `${g.grantee === me() ? 'you' : store.nameOf(g.grantee)}: ${g.w}×${g.h} at ${g.x},${g.y} ` }))
        if (mine) {
          const revoke = h('button', { type: 'button', class: 'small', 'data-revoke': g.id, text: 'revoke' })
          revoke.addEventListener('click', () => { void submit('land-revoke', `revoke the grant to ${store.nameOf(g.grantee)}`, '/api/v0/ledger/land/revoke', { grant: g.id }) })
          li.append(revoke)
        }
        return li
      })))
    const parcels = land?.parcels ?? []
    parcelList.replaceChildren(...(parcels.length === 0
      ? [h('li', { class: 'muted', text: 'no parcels' })]
      : parcels.map(p => h('li', { 'data-parcel': p.id, 'data-owner': p.owner, class: p.owner === me() ? 'mine' : undefined, title: p.owner, text: `${p.owner === me() ? 'you' : store.nameOf(p.owner)}: ${p.w}×${p.h} at ${p.x},${p.y}` }))))
    ownerBox.hidden = !mine
    // The max price follows the price shown until the person types their own.
    if (maxPrice.dataset.typed == null) maxPrice.value = priceOf().toString()
    renderPeople()
    updateCost()
  }

  function renderPeople (): void {
    const chosen = grantPerson.value
    grantPerson.replaceChildren(h('option', { value: '', text: 'a person here…' }),
      ...store.people().filter(p => p.did !== me()).map(p => h('option', { value: p.did, text: p.name !== '' ? p.name : shortDid(p.did) })))
    grantPerson.value = [...grantPerson.options].some(o => o.value === chosen) ? chosen : ''
  }

  /** What the claim form's rectangle would cost, as this page sees the land now (the ledger decides). */
  function updateCost (): void {
    let text: string
    let state: string
    try {
      const r = parseRect({ x: claim.x.value, y: claim.y.value, w: claim.w.value, h: claim.h.value }, grid())
      const price = priceOf()
      const owner = ownerOf()
      if (owner === me()) { state = 'own'; text = 'Your space: the claim costs only the fee.' } else if ((land?.grants ?? []).some(g => g.grantee === me() && contains(g, r))) { state = 'granted'; text = 'Inside the owner\'s grant to you: the claim costs only the fee.' } else if (price > 0n) { state = 'price'; text = `At ${price} a cell: ${price * BigInt(r.w * r.h)} to the owner, if your max price is at least ${price}.` } else { state = 'refused'; text = 'You hold no grant here and the land is not for sale: the ledger will refuse this claim (NotGrantedError).' }
    } catch (err) {
      state = 'invalid'
      text = `${(err as Error).name}: ${(err as Error).message}`
    }
    cost.dataset.state = state
    cost.textContent = text
  }

  async function refresh (): Promise<void> {
    const id = store.spaceId
    if (id == null) { land = null; render(); return }
    try {
      const [answer, status] = await Promise.all([
        api.get<LandAnswer>(`/api/v0/ledger/land/${encodeURIComponent(id)}`),
        api.get<{ height: number }>('/api/v0/ledger/status')
      ])
      if (store.spaceId !== id) return
      height = status.height
      // A block that changed nothing here leaves the lists as they are (no churn under the pointer).
      if (land != null && JSON.stringify(answer) === JSON.stringify(land)) return
      land = answer
      render()
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'PeerUnreachable')) report.showError('land', err)
    }
  }

  // -- transactions ------------------------------------------------------------------------------

  function showTx (t: Tracked): void {
    t.li.dataset.status = t.status
    const detail = t.status === 'committed'
      ? `final at height ${t.height ?? '?'}${t.created != null && t.kind === 'mint' ? `: asset ${t.created}` : ''}`
      : t.status === 'rejected'
        ? `refused: ${t.error ?? 'Error'}`
        : t.status === 'unknown' && Date.now() - t.started > TX_POLL_GIVE_UP_MS ? 'unknown (dropped?)' : 'pending…'
    if (t.error != null) t.li.dataset.error = t.error
    t.li.replaceChildren(h('span', { text: `${t.what}: ` }), h('b', { class: 'tx-state', text: detail }))
  }

  function finish (t: Tracked, s: TxStatus & { created?: string }): void {
    if (t.status === 'committed' || t.status === 'rejected') return
    clearTimeout(t.timer)
    t.status = s.status
    t.height = s.height
    t.error = s.error
    t.created = s.created ?? s.receipt?.created
    showTx(t)
    if (s.status === 'rejected') report.showError(t.kind, new RefusedError(s.error ?? 'Error', s.message ?? ''))
    if (s.status === 'committed' && t.kind === 'mint' && t.created != null) {
      minted.dataset.asset = t.created
      minted.textContent = `Minted: asset ${t.created} (final at height ${t.height ?? '?'})`
    }
    void refresh()
  }

  async function poll (t: Tracked): Promise<void> {
    if (t.status === 'committed' || t.status === 'rejected') return
    try {
      const s = await api.get<TxStatus>(`/api/v0/ledger/tx/${encodeURIComponent(t.id)}`)
      if (s.status === 'committed' || s.status === 'rejected') { finish(t, s); return }
      t.status = s.status
      showTx(t)
    } catch {}
    if (Date.now() - t.started < TX_POLL_GIVE_UP_MS) t.timer = setTimeout(() => { void poll(t) }, TX_POLL_MS)
  }

  /** Submits one of our transactions through the peer and follows it until it is final or refused. */
  async function submit (kind: string, what: string, path: string, body: Record<string, unknown>): Promise<boolean> {
    try {
      const tx = await api.post<{ id: string }>(path, body)
      const t: Tracked = { id: tx.id, kind, what, status: 'pending', li: h('li', { 'data-tx': tx.id, 'data-kind': kind }), started: Date.now() }
      txs.set(t.id, t)
      txList.prepend(t.li)
      while (txList.children.length > MAX_LAND_TX_SHOWN) txList.lastElementChild?.remove()
      for (const id of [...txs.keys()].slice(0, Math.max(0, txs.size - MAX_LAND_TX_SHOWN))) { clearTimeout(txs.get(id)?.timer); txs.delete(id) }
      showTx(t)
      t.timer = setTimeout(() => { void poll(t) }, TX_POLL_MS)
      return true
    } catch (err) {
      report.showError(kind, err)
      return false
    }
  }

  /** Runs a form's checks; a named error is shown and nothing is signed. */
  function checked<T> (context: string, read: () => T): T | undefined {
    try {
      return read()
    } catch (err) {
      report.showError(context, err)
      return undefined
    }
  }

  // -- forms -------------------------------------------------------------------------------------

  for (const el of [claim.x, claim.y, claim.w, claim.h]) el.addEventListener('input', updateCost)
  maxPrice.addEventListener('input', () => { maxPrice.dataset.typed = '' })
  here.addEventListener('click', () => { fillHere(claim) })

  claimForm.addEventListener('submit', e => {
    e.preventDefault()
    const space = store.spaceId
    if (space == null) { report.showError('claim', new Error('enter a space first')); return }
    const read = checked('claim', () => ({ rect: parseRect({ x: claim.x.value, y: claim.y.value, w: claim.w.value, h: claim.h.value }, grid()), max: parsePrice(maxPrice.value, 'your max price') }))
    if (read == null) return
    const { rect, max } = read
    void submit('claim', `claim ${rect.w}×${rect.h} at ${rect.x},${rect.y}`, '/api/v0/ledger/parcel/claim', { space, ...rect, maxPrice: max.toString() })
  })

  grantPerson.addEventListener('change', () => { if (grantPerson.value !== '') grantTo.value = grantPerson.value })

  grantForm.addEventListener('submit', e => {
    e.preventDefault()
    const space = store.spaceId
    if (space == null) return
    const read = checked('grant', () => ({ to: parseGrantee(grantTo.value), rect: parseRect({ x: grantRect.x.value, y: grantRect.y.value, w: grantRect.w.value, h: grantRect.h.value }, grid()) }))
    if (read == null) return
    void submit('land-grant', `grant ${read.rect.w}×${read.rect.h} at ${read.rect.x},${read.rect.y} to ${store.nameOf(read.to)}`, '/api/v0/ledger/land/grant', { space, to: read.to, ...read.rect })
  })

  function setPrice (price: bigint): void {
    const space = store.spaceId
    if (space == null) return
    void submit('land-price', price === 0n ? 'end the sale' : `sell at ${price} a cell`, '/api/v0/ledger/land/price', { space, price: price.toString() })
  }
  priceForm.addEventListener('submit', e => {
    e.preventDefault()
    const price = checked('price', () => parsePrice(priceInput.value))
    if (price != null) setPrice(price)
  })
  priceClear.addEventListener('click', () => { setPrice(0n) })

  mintFile.addEventListener('change', () => {
    const file = mintFile.files?.[0]
    if (file == null) return
    mintStatus.textContent = `adding ${file.name}…`
    void api.addContent(file, file.name)
      .then(({ cid }) => {
        mintCid.value = cid
        if (mintName.value.trim() === '') mintName.value = file.name.slice(0, MAX_ASSET_NAME_LENGTH)
        mintStatus.textContent = `added ${cid.slice(0, 14)}…`
        mintStatus.title = cid
        mintStatus.dataset.cid = cid
      })
      .catch(err => { mintStatus.textContent = ''; report.showError('upload', err) })
      .finally(() => { mintFile.value = '' })
  })

  mintForm.addEventListener('submit', e => {
    e.preventDefault()
    const read = checked('mint', () => ({ content: parseCidText(mintCid.value), name: parseAssetName(mintName.value) }))
    if (read == null) return
    void submit('mint', `mint "${read.name}"`, '/api/v0/ledger/asset/mint', read).then(ok => { if (ok) { mintCid.value = ''; mintName.value = '' } })
  })

  store.on('space', ({ id, previous }) => {
    if (id === previous) return
    land = null
    render()
  })
  store.on('people', render)
  render()

  return {
    hook: () => ({
      space: store.spaceId,
      known: land?.known === true,
      owner: ownerOf() ?? null,
      price: land?.known === true ? land.price ?? '0' : null,
      grants: (land?.grants ?? []).map(g => ({ ...g })),
      parcels: (land?.parcels ?? []).map(p => ({ ...p })),
      height,
      txs: [...txs.values()].map(t => ({ id: t.id, kind: t.kind, status: t.status, height: t.height, error: t.error, created: t.created }))
    }),
    async load (_id, switched) {
      await refresh()
      return () => {
        if (switched || claim.x.value === '') fillHere(claim)
        if (switched || grantRect.x.value === '') fillHere(grantRect)
      }
    },
    events: {
      'ledger:block': () => { if (store.spaceId != null) debounce('land', 300, refresh) },
      'ledger:receipt': msg => {
        const t = txs.get(String(msg.tx))
        if (t == null) return
        finish(t, msg.ok === true
          ? { status: 'committed', height: Number(msg.height), created: typeof msg.created === 'string' ? msg.created : undefined }
          : { status: 'rejected', error: String(msg.error ?? 'Rejected'), message: String(msg.message ?? '') })
      }
    }
  }
}
