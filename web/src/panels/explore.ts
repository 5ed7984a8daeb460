// Explore: the directory of live spaces, most members present first; listing our own space in it.
import { ApiError, type Api } from '../api.ts'
import { $, h } from '../dom.ts'
import { debouncer, type EventHandlers } from '../events.ts'
import { parseLink, type Link } from '../links.ts'
import type { Panel, Report } from '../panel.ts'
import { shortDid } from '../scene.ts'
import type { Store } from '../store.ts'

/** How often the directory is asked again (directory events, when the peer sends them, trigger it too). */
export const EXPLORE_REFRESH_MS = 10_000
/** Listings shown at most (the peer already bounds them; this keeps the panel short). */
export const MAX_EXPLORE_SHOWN = 50
/** Tags shown per listing at most. */
export const MAX_EXPLORE_TAGS = 6
/** Bytes a listing's thumbnail may have: the peer refuses a larger one before fetching its data. */
export const THUMBNAIL_MAX_BYTES = 256 * 1024
/** Refused thumbnails remembered (not asked for again on each refresh); forgotten all at once past this. */
export const MAX_REFUSED_THUMBNAILS = 4 * MAX_EXPLORE_SHOWN

/** The URL of a listing's thumbnail: a /content read capped at THUMBNAIL_MAX_BYTES. */
export function thumbnailUrl (cid: string, token: string): string {
  return `/content/${encodeURIComponent(cid)}?max=${THUMBNAIL_MAX_BYTES}&token=${encodeURIComponent(token)}`
}

export interface Listing {
  space: string
  name: string
  description?: string
  tags?: string[]
  thumbnail?: string
  owner: string
  present: number
  updatedAt: number
  link: string
}

export interface ExploreContext {
  api: Pick<Api, 'get' | 'post' | 'token'>
  store: Pick<Store, 'did' | 'spaceId' | 'space' | 'on'>
  report: Report
  /** Opens a listing's link (joins its space through the peers it names). */
  openLink: (link: Link) => Promise<void>
}

export interface ExplorePanel extends Panel {
  refresh: () => Promise<void>
  /** Any event whose type starts with `directory:`. */
  directoryEvent: () => void
  readonly listings: Listing[]
}

/** Listings in the order shown: most members present first, then the most recently updated. */
export function rankListings (list: Listing[]): Listing[] {
  return list.map((l, i) => ({ l, i }))
    .sort((a, b) => (b.l.present - a.l.present) || (b.l.updatedAt - a.l.updatedAt) || (a.i - b.i))
    .map(x => x.l)
}

export function mountExplore (ctx: ExploreContext): ExplorePanel {
  const { api, store, report } = ctx
  const debounce = debouncer()
  let listings: Listing[] = []
  let failing = false
  const refusedThumbnails = new Set<string>()

  async function refresh (): Promise<void> {
    try {
      const got = await api.get<{ listings: Listing[] }>('/api/v0/directory')
      listings = rankListings(Array.isArray(got.listings) ? got.listings : []).slice(0, MAX_EXPLORE_SHOWN)
      failing = false
    } catch (err) {
      // One message per outage, not one per interval.
      if (!failing && !(err instanceof ApiError && (err.code === 'PeerUnreachable' || err.status === 401))) report.showError('explore', err)
      failing = true
    }
    render()
  }

  function render (): void {
    $('explore-count').textContent = listings.length > 0 ? `(${listings.length})` : ''
    const ul = $('explore')
    ul.replaceChildren(...listings.map(l => {
      const li = h('li', { 'data-space': l.space, 'data-present': String(l.present), class: l.space === store.spaceId ? 'current' : undefined })
      const thumbnail = l.thumbnail
      if (typeof thumbnail === 'string' && thumbnail !== '' && !refusedThumbnails.has(thumbnail)) {
        const img = h('img', { class: 'thumb', alt: '', loading: 'lazy', src: thumbnailUrl(thumbnail, api.token) })
        // Too large, missing or not an image: nothing is shown, and it is not asked for again.
        img.addEventListener('error', () => {
          img.remove()
          if (refusedThumbnails.size >= MAX_REFUSED_THUMBNAILS) refusedThumbnails.clear()
          refusedThumbnails.add(thumbnail)
        })
        li.append(img)
      }
      const join = h('button', { type: 'button', class: 'small', 'data-join': l.space, text: l.space === store.spaceId ? 'here' : 'join' })
      join.disabled = l.space === store.spaceId
      join.addEventListener('click', () => { void openListing(l) })
      li.append(
        h('strong', { class: 'name', title: l.description ?? '', text: l.name }),
        h('span', { class: 'present muted', text: ` ${l.present} present` }),
        join,
        h('span', { class: 'tags', text: [...(l.tags ?? []).slice(0, MAX_EXPLORE_TAGS).map(t => `#${t}`), `by ${l.owner === store.did ? 'you' : shortDid(l.owner)}`].join(' ') })
      )
      return li
    }))
    if (listings.length === 0) ul.append(h('li', { class: 'muted', text: 'No listed spaces seen yet.' }))
    renderOwn()
  }

  async function openListing (l: Listing): Promise<void> {
    let link: Link
    try {
      link = parseLink(l.link)
    } catch (err) {
      report.showError('explore', err)
      return
    }
    if (link.kind !== 'space' || link.target !== l.space) {
      report.showError('explore', new Error(`the listing's link does not open ${l.name}`))
      return
    }
    await ctx.openLink(link)
  }

  /** The owner's part: list or unlist the space shown. */
  function renderOwn (): void {
    const sv = store.space
    const mine = sv != null && store.did != null && sv.owner === store.did
    const listed = mine && listings.some(l => l.space === store.spaceId && l.owner === store.did)
    $('dir-own').hidden = !mine
    $('dir-own').dataset.listed = String(listed)
    $('dir-hint').textContent = !mine
      ? ''
      : sv.private
        ? 'This space is private: only public spaces can be listed.'
        : listed ? 'This space is listed: others find it in Explore.' : 'List this space so others find it in Explore.'
  }

  async function publish (): Promise<void> {
    const space = store.spaceId
    if (space == null) return
    const description = $<HTMLInputElement>('dir-description').value.trim()
    const tags = $<HTMLInputElement>('dir-tags').value.split(',').map(t => t.trim()).filter(t => t !== '')
    const thumbnail = $<HTMLInputElement>('dir-thumbnail').value.trim()
    try {
      await api.post('/api/v0/directory/publish', { space, ...(description !== '' ? { description } : {}), ...(tags.length > 0 ? { tags } : {}), ...(thumbnail !== '' ? { thumbnail } : {}) })
      report.showInfo('listed in the directory')
    } catch (err) {
      report.showError('list', err)
      return
    }
    await refresh()
  }

  async function unpublish (): Promise<void> {
    const space = store.spaceId
    if (space == null) return
    try {
      await api.post('/api/v0/directory/unpublish', { space })
      report.showInfo('removed from the directory')
    } catch (err) {
      report.showError('unlist', err)
      return
    }
    await refresh()
  }

  $('dir-form').addEventListener('submit', e => {
    e.preventDefault()
    void publish()
  })
  $('dir-unpublish').addEventListener('click', () => { void unpublish() })
  store.on('space', () => { render() })
  setInterval(() => { if (document.visibilityState !== 'hidden') void refresh() }, EXPLORE_REFRESH_MS)
  renderOwn()

  const directoryEvent = (): void => { debounce('explore', 500, refresh) }
  const events: EventHandlers = {}
  return { refresh, directoryEvent, events, get listings () { return listings } }
}
