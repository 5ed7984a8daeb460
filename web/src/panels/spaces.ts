// Spaces: the one shown (name, id, link), our spaces (enter, leave), create and join by id or link.
import type { Api } from '../api.ts'
import { $, h } from '../dom.ts'
import { copyText, formatLink, hashLink, readPasted, type Link } from '../links.ts'
import type { Report, SpaceLoader } from '../panel.ts'
import type { View } from '../scene.ts'
import type { SpaceView, Store } from '../store.ts'

export interface SpacesContext {
  api: Pick<Api, 'get' | 'post'>
  store: Pick<Store, 'spaceId' | 'setSpace' | 'people' | 'on'>
  view: Pick<View, 'me' | 'setGrid' | 'renderer' | 'webglError'>
  report: Report
  /** Tells the banner which space is being joined (null when done). */
  setJoining: (id: string | null) => void
  /** The other panels' parts in showing a space, in the order their results apply. */
  loaders: SpaceLoader[]
  /** Our pose should go to the peer again (we stand somewhere new). */
  poseChanged: () => void
  /** A pasted link that is not a space's (a network to join, content). */
  openLink: (link: Link) => void
  /** Our avatar CID ('' for none), sent with a join so others draw it from the first presence. */
  avatar?: () => string
}

/** Our spaces' member counts are asked again this often (the shown one's follows its people list). */
export const SPACES_REFRESH_MS = 15_000

/**
 * The count beside a space: the people the user is shown there, ourselves included (the peer's
 * count leaves out members the user blocked, as its member list does). For the space shown, the
 * people list itself, which presence keeps current; for the others, the peer's count when last asked.
 */
export function hereCount (space: Pick<SpaceView, 'id' | 'members'>, shown: string | null, people: number): number {
  return space.id === shown && people > 0 ? people : space.members
}

export interface SpacesPanel {
  /** Our spaces, asked again. */
  refresh: () => Promise<void>
  /** Shows a space we are in (again): its descriptor, people, chat, objects and parcels. */
  load: (id: string) => Promise<void>
  /** At start: the space the link names, else our first one, else nothing. */
  pickInitial: () => Promise<void>
  /** Joins the space a link names (dialling the peers it carries) and shows it. */
  enterLink: (link: Link, options?: { name?: string }) => Promise<void>
  /** Our spaces as the peer last listed them. */
  readonly list: SpaceView[]
}

export function mountSpaces (ctx: SpacesContext): SpacesPanel {
  const { api, store, view, report } = ctx
  let spaces: SpaceView[] = []

  async function refresh (): Promise<void> {
    try {
      spaces = (await api.get<{ spaces: SpaceView[] }>('/api/v0/space')).spaces
    } catch (err) {
      report.showError('spaces', err)
    }
    render()
  }

  function render (): void {
    const ul = $('spaces')
    ul.replaceChildren(...spaces.map(s => {
      const go = h('button', { type: 'button', class: 'link', 'data-space': s.id, text: s.name + (s.private ? ' 🔒' : '') })
      go.addEventListener('click', () => { void enter(s.id) })
      const leave = h('button', { type: 'button', class: 'small', 'data-leave': s.id, title: 'Leave this space', text: 'leave' })
      leave.addEventListener('click', () => { void leaveSpace(s.id) })
      const n = hereCount(s, store.spaceId, store.people().length)
      return h('li', { class: s.id === store.spaceId ? 'current' : undefined, 'data-space': s.id }, go, h('span', { class: 'muted here', 'data-count': String(n), text: ` ${n} here` }), leave)
    }))
    if (spaces.length === 0) ul.append(h('li', { class: 'muted', text: 'You are in no space yet.' }))
  }

  store.on('people', render)
  setInterval(() => { if (document.visibilityState === 'visible') void refresh() }, SPACES_REFRESH_MS)

  /** The space the address bar's link names, if it names one. */
  function hashSpace (): Link | undefined {
    const link = hashLink()
    return link instanceof Error || link?.kind !== 'space' ? undefined : link
  }

  async function pickInitial (): Promise<void> {
    const fromLink = hashSpace()
    if (fromLink != null) { await enterLink(fromLink); return }
    if (spaces.length > 0) { await enter(spaces[0].id); return }
    showEmpty()
  }

  /** The view's placeholder text: no WebGL, or no space yet. */
  function showEmpty (): void {
    const el = $('empty-space')
    el.hidden = store.spaceId != null && view.renderer != null
    el.textContent = view.renderer == null
      ? `This browser gives no WebGL (${view.webglError ?? 'unavailable'}): the 3D view is off, the panel still works.`
      : 'Create or join a space in the panel to step in.'
  }
  showEmpty()

  async function enterLink (link: Link, options: { name?: string } = {}): Promise<void> {
    if (link.kind !== 'space') { ctx.openLink(link); return }
    await enter(link.target, { ...options, link })
  }

  /** Joins (when not yet a member; through the link's peers when it carries some) and shows a space. */
  async function enter (id: string, options: { name?: string, link?: Link } = {}): Promise<void> {
    if (!spaces.some(s => s.id === id) || options.name != null) {
      ctx.setJoining(id)
      const how = options.link != null && options.link.peers.length > 0 ? { link: formatLink(options.link) } : { space: id }
      try {
        const avatar = ctx.avatar?.() ?? ''
        await api.post('/api/v0/space/join', { ...how, ...(options.name != null ? { name: options.name } : {}), ...(avatar !== '' ? { avatar } : {}) })
      } catch (err) {
        report.showError('join', err)
        return
      } finally {
        ctx.setJoining(null)
      }
      await refresh()
    }
    await load(id)
  }

  async function leaveSpace (id: string): Promise<void> {
    try {
      await api.post('/api/v0/space/leave', { space: id })
    } catch (err) {
      report.showError('leave', err)
    }
    await refresh()
    if (store.spaceId === id) {
      store.setSpace(null, null)
      $('space-name').textContent = '—'
      $('space-id').textContent = ''
      history.replaceState(history.state, '', location.pathname + location.search)
      if (spaces.length > 0) await enter(spaces[0].id)
      else showEmpty()
    }
  }

  async function load (id: string): Promise<void> {
    let sv: SpaceView
    try {
      sv = await api.get<SpaceView>(`/api/v0/space/${encodeURIComponent(id)}`)
    } catch (err) {
      report.showError('space', err)
      return
    }
    const switched = store.spaceId !== id
    store.setSpace(id, sv)
    showEmpty()
    $('space-name').textContent = sv.name
    $('space-id').textContent = id
    $('space-id').title = id
    if (hashSpace()?.target !== id) history.replaceState(history.state, '', `${location.pathname}${location.search}#space=${encodeURIComponent(id)}`)
    view.setGrid(sv.grid)
    // Where the peer puts a newcomer, until `who` tells us where we stand.
    if (switched) view.me.position = [sv.grid.width / 2, 0, sv.grid.depth / 2]
    render()
    const applies = await Promise.all(ctx.loaders.map(l => l.load(id, switched)))
    if (store.spaceId !== id) return
    for (const apply of applies) apply?.()
    ctx.poseChanged()
  }

  $('create-form').addEventListener('submit', e => {
    e.preventDefault()
    const name = $<HTMLInputElement>('create-name').value.trim()
    if (name === '') { report.showError('create', new Error('give the space a name')); return }
    const displayName = $<HTMLInputElement>('join-name').value.trim()
    void (async () => {
      try {
        const sv = await api.post<SpaceView>('/api/v0/space/create', { name, private: $<HTMLInputElement>('create-private').checked, ...(displayName !== '' ? { displayName } : {}) })
        $<HTMLInputElement>('create-name').value = ''
        await refresh()
        await load(sv.id)
      } catch (err) {
        report.showError('create', err)
      }
    })()
  })

  $('join-form').addEventListener('submit', e => {
    e.preventDefault()
    let link: Link
    try {
      link = readPasted($<HTMLInputElement>('join-id').value)
    } catch (err) {
      report.showError('join', err)
      return
    }
    if (link.kind !== 'space') { $<HTMLInputElement>('join-id').value = ''; ctx.openLink(link); return }
    const name = $<HTMLInputElement>('join-name').value.trim()
    void enterLink(link, name !== '' ? { name } : {}).then(() => { if (store.spaceId === link.target) $<HTMLInputElement>('join-id').value = '' })
  })

  $('space-copy').addEventListener('click', () => {
    const id = store.spaceId
    if (id == null) return
    // The peer makes the link: the space id and a few addresses of peers that hold it. It carries
    // no token: whoever gets it opens it in their own client or pastes it in the join box.
    void (async () => {
      let link: string
      try {
        link = (await api.get<{ code: string, link: string }>(`/api/v0/space/link?id=${encodeURIComponent(id)}`)).link
      } catch (err) {
        report.showError('link', err)
        return
      }
      $('space-id').dataset.link = link
      report.showInfo(await copyText(link) ? `copied ${link}` : link)
    })()
  })

  return { refresh, load, pickInitial, enterLink, get list () { return spaces } }
}
