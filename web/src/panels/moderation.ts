/**
 * Moderation from the browser. For everyone: mute and block a person (the peer's social lists,
 * which it applies in every space and in voice: a block hides their chat, avatar and voice, a mute
 * silences their voice and leaves them out of the timeline), from their row in the people list,
 * and the list of whom you blocked or muted, to undo it. For the owner of the space shown: its
 * editors, the members of a private space (add by did; a removal rotates the space key), mute for
 * everyone, kick and ban, from a person's row or the owner's section, all one signed policy change
 * each through the peer. The same controls show on a person's card, opened by a click on their
 * avatar. Controls are only shown where they apply; a refusal shows the peer's named error.
 */
import { ApiError, type Api } from '../api.ts'
import { $, h } from '../dom.ts'
import { spaceOf } from '../events.ts'
import type { Panel, Report, SpaceLoader } from '../panel.ts'
import type { View } from '../scene.ts'
import type { SpaceView, Store } from '../store.ts'

export interface ModerationContext {
  api: Pick<Api, 'get' | 'post'>
  store: Store
  view: Pick<View, 'removeMember'>
  report: Report
  /** The people list should be drawn again (its rows' controls changed). */
  peopleChanged: () => void
}

/** The owner's policy of the space shown, as the peer gives it. */
export type Policy = SpaceView['policy'] & { kicked?: Record<string, number> }

/** The owner's actions on one member, as the policy API names them. */
export const OWNER_ACTIONS = {
  editor: { add: 'addEditors', remove: 'removeEditors', label: 'editor' },
  member: { add: 'addMembers', remove: 'removeMembers', label: 'member' },
  mute: { add: 'mute', remove: 'unmute', label: 'muted for all' },
  ban: { add: 'ban', remove: 'unban', label: 'banned' },
  kick: { add: 'kick', remove: undefined, label: 'kicked' }
} as const
export type OwnerAction = keyof typeof OWNER_ACTIONS

export interface ModerationHookView {
  blocked: string[]
  muted: string[]
  /** Whether the owner's controls are shown (we own the space shown). */
  owner: boolean
  /** The person whose card is open (a click on their avatar), if any. */
  card: string | null
  policy: Policy | null
}

export interface ModerationPanel extends Panel, SpaceLoader {
  /** Adds mute and block (and, for the owner, the owner's menu) to a person's row. */
  decorate: (li: HTMLElement, did: string) => void
  /** Shows a person's card over the view (their name, mute, block, the owner's menu); undefined hides it. */
  showCard: (did: string | undefined) => void
  hook: () => ModerationHookView
}

export function mountModeration (ctx: ModerationContext): ModerationPanel {
  const { api, store, view, report } = ctx
  let blocked = new Set<string>()
  let muted = new Set<string>()
  /** Names of the people we blocked, as last seen (they leave the people list). */
  const names = new Map<string, string>()

  const isOwner = (): boolean => store.space != null && store.did != null && store.space.owner === store.did
  const policy = (): Policy | null => store.space?.policy ?? null
  const nameOf = (did: string): string => names.get(did) ?? store.nameOf(did)

  /** Shows a refusal with the peer's error name. */
  function refused (action: string, err: unknown): void {
    report.showError(err instanceof ApiError ? `${action} refused (${err.code})` : action, err)
  }

  // -- personal: mute and block ------------------------------------------------------------------

  async function refreshLists (): Promise<void> {
    try {
      const l = await api.get<{ muted: string[], blocked: string[] }>('/api/v0/social/lists')
      blocked = new Set(l.blocked)
      muted = new Set(l.muted)
    } catch (err) {
      report.showError('lists', err)
    }
    renderAll()
  }

  /** Chat lines of an author, shown or hidden (a block hides them; an unblock shows them again). */
  function showChatOf (did: string, show: boolean): void {
    for (const li of document.querySelectorAll<HTMLElement>(`#chat-log li[data-author="${CSS.escape(did)}"]`)) li.hidden = !show
  }

  async function setBlocked (did: string, on: boolean): Promise<void> {
    if (on) names.set(did, store.nameOf(did))
    try {
      const l = await api.post<{ muted: string[], blocked: string[] }>(`/api/v0/social/${on ? 'block' : 'unblock'}`, { did })
      blocked = new Set(l.blocked)
      muted = new Set(l.muted)
    } catch (err) {
      refused(on ? 'block' : 'unblock', err)
      return
    }
    showChatOf(did, !on)
    if (on) {
      // The peer sends no more of them and says they left; out of sight here at once.
      view.removeMember(did)
      store.removePerson(did)
    } else if (store.spaceId != null) {
      // Their presence comes back from the peer; their chat lines show again.
      report.showInfo(`unblocked ${nameOf(did)}`)
    }
    renderAll()
  }

  async function setMuted (did: string, on: boolean): Promise<void> {
    try {
      const l = await api.post<{ muted: string[], blocked: string[] }>(`/api/v0/social/${on ? 'mute' : 'unmute'}`, { did })
      blocked = new Set(l.blocked)
      muted = new Set(l.muted)
    } catch (err) {
      refused(on ? 'mute' : 'unmute', err)
      return
    }
    renderAll()
  }

  function renderPersonal (): void {
    const rows = [
      ...[...blocked].map(did => ({ did, what: 'blocked', undo: () => { void setBlocked(did, false) }, attr: 'data-unblock' })),
      ...[...muted].map(did => ({ did, what: 'muted', undo: () => { void setMuted(did, false) }, attr: 'data-unmute' }))
    ]
    $('mod-personal').replaceChildren(...rows.map(r => {
      const undo = h('button', { type: 'button', class: 'small', [r.attr]: r.did, text: r.what === 'blocked' ? 'unblock' : 'unmute' })
      undo.addEventListener('click', r.undo)
      return h('li', { 'data-did': r.did, 'data-state': r.what }, h('span', { class: 'name', title: r.did, text: `${nameOf(r.did)} (${r.what})` }), undo)
    }))
    if (rows.length === 0) $('mod-personal').append(h('li', { class: 'muted', text: 'You blocked or muted nobody.' }))
  }

  // -- owner: the space's policy -----------------------------------------------------------------

  async function change (action: OwnerAction, did: string, on: boolean): Promise<void> {
    const id = store.spaceId
    if (id == null) return
    const key = on ? OWNER_ACTIONS[action].add : OWNER_ACTIONS[action].remove
    if (key == null) return
    try {
      const next = await api.post<Policy>('/api/v0/space/policy', { space: id, [key]: [did] })
      if (store.spaceId !== id) return
      store.setPolicy(next)
    } catch (err) {
      refused(`${on ? '' : 'un'}${action}`, err)
      return
    }
    if (action === 'member' && !on) report.showInfo(`removed ${nameOf(did)}: the space key rotates`)
    renderAll()
  }

  /** The people a policy list names, with a button that takes each off it. */
  function ownerList (action: OwnerAction, dids: string[]): HTMLElement {
    const a = OWNER_ACTIONS[action]
    const items = dids.map(did => {
      const li = h('li', { 'data-did': did }, h('span', { class: 'name', title: did, text: nameOf(did) }))
      if (a.remove != null && did !== store.space?.owner) {
        const b = h('button', { type: 'button', class: 'small', [`data-remove-${action}`]: did, text: 'remove' })
        b.addEventListener('click', () => { void change(action, did, false) })
        li.append(b)
      }
      return li
    })
    return h('li', { class: 'mod-list', 'data-list': action }, h('span', { class: 'label', text: `${a.label} (${dids.length})` }), h('ul', { class: 'list small' }, ...items))
  }

  function renderOwner (): void {
    const box = $('mod-owner')
    const p = policy()
    box.hidden = !isOwner() || p == null
    if (box.hidden || p == null) return
    const priv = store.space?.private === true
    const now = Date.now()
    const kicked = Object.entries(p.kicked ?? {}).filter(([, until]) => until > now).map(([did]) => did)
    $('mod-owner-lists').replaceChildren(
      ownerList('editor', p.editors),
      ...(priv ? [ownerList('member', p.members)] : []),
      ownerList('mute', p.muted),
      ownerList('ban', p.banned),
      ownerList('kick', kicked)
    )
    $<HTMLOptionElement>('mod-action-member').disabled = !priv
  }

  $('mod-form').addEventListener('submit', e => {
    e.preventDefault()
    const input = $<HTMLInputElement>('mod-did')
    const did = input.value.trim()
    const action = $<HTMLSelectElement>('mod-action').value as OwnerAction
    if (did === '' || !(action in OWNER_ACTIONS)) return
    void change(action, did, true).then(() => { if (policyHas(action, did)) input.value = '' })
  })

  function policyHas (action: OwnerAction, did: string): boolean {
    const p = policy()
    if (p == null) return false
    switch (action) {
      case 'editor': return p.editors.includes(did)
      case 'member': return p.members.includes(did)
      case 'mute': return p.muted.includes(did)
      case 'ban': return p.banned.includes(did)
      case 'kick': return (p.kicked?.[did] ?? 0) > Date.now()
    }
  }

  // -- a person's row ----------------------------------------------------------------------------

  function decorate (li: HTMLElement, did: string): void {
    if (did === store.did) return
    const mute = h('button', { type: 'button', class: 'small', 'data-mute': did, 'aria-pressed': String(muted.has(did)), title: 'Mute them for you: their voice in every space, their posts in your timeline', text: muted.has(did) ? 'unmute' : 'mute' })
    mute.addEventListener('click', () => { void setMuted(did, !muted.has(did)) })
    const block = h('button', { type: 'button', class: 'small', 'data-block': did, title: 'Block them for you: their chat, avatar, voice and posts are hidden', text: 'block' })
    block.addEventListener('click', () => { void setBlocked(did, true) })
    li.append(mute, block)
    if (!isOwner() || did === store.space?.owner) return
    const menu = h('select', { class: 'small', 'data-owner': did, 'aria-label': 'owner actions', title: 'Owner actions for everyone in this space' },
      h('option', { value: '', text: 'owner…' }),
      ...ownerChoices(did).map(([value, text]) => h('option', { value, text })))
    menu.addEventListener('change', () => {
      const [on, action] = menu.value.split(':') as ['add' | 'remove', OwnerAction]
      menu.value = ''
      if (action in OWNER_ACTIONS) void change(action, did, on === 'add')
    })
    li.append(menu)
  }

  /** The owner's menu for one person: each action or its undo, by what the policy says now. */
  function ownerChoices (did: string): Array<[string, string]> {
    const out: Array<[string, string]> = []
    const flip = (action: OwnerAction, add: string, remove: string): void => {
      out.push(policyHas(action, did) ? [`remove:${action}`, remove] : [`add:${action}`, add])
    }
    flip('editor', 'make editor', 'remove editor')
    if (store.space?.private === true) flip('member', 'add member', 'remove member')
    flip('mute', 'mute for all', 'unmute for all')
    out.push(['add:kick', 'kick'])
    flip('ban', 'ban', 'unban')
    return out
  }

  // -- a person's card, from a click on their avatar ---------------------------------------------

  /** The person whose card shows over the view, if any. */
  let carded: string | undefined

  function showCard (did: string | undefined): void {
    carded = did
    let card = document.getElementById('person-card')
    if (did == null || did === store.did) { card?.remove(); carded = undefined; return }
    if (card == null) {
      card = h('div', { id: 'person-card', 'data-testid': 'person-card', role: 'dialog', 'aria-label': 'Person' })
      $('view').append(card)
    }
    const close = h('button', { type: 'button', class: 'close', 'aria-label': 'close', text: '×' })
    close.addEventListener('click', () => { showCard(undefined) })
    card.dataset.did = did
    card.replaceChildren(h('span', { class: 'name', title: did, text: nameOf(did) }), close)
    decorate(card, did)
  }

  function renderAll (): void {
    renderPersonal()
    renderOwner()
    ctx.peopleChanged()
    if (carded != null) showCard(blocked.has(carded) ? undefined : carded)
  }

  store.on('space', ({ id, previous }) => {
    if (id !== previous) showCard(undefined)
    renderOwner()
  })
  renderPersonal()

  return {
    decorate,
    showCard,
    async load () {
      await refreshLists()
      return renderAll
    },
    events: {
      'space:policy': msg => {
        if (spaceOf(msg) !== store.spaceId || store.space == null) return
        store.setPolicy(msg.policy as SpaceView['policy'])
        renderAll()
      },
      'space:leave': msg => { if (spaceOf(msg) === store.spaceId && msg.did === carded) showCard(undefined) }
    },
    hook: () => ({ blocked: [...blocked], muted: [...muted], owner: isOwner() && !$('mod-owner').hidden, card: carded ?? null, policy: policy() })
  }
}

