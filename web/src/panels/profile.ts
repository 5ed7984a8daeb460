/**
 * Profiles and follows: your own profile (name, bio, avatar CID) to edit; a person's profile,
 * opened from the people list or a post's author, with follow and unfollow; whom you follow.
 * Fields over the feed's limits are refused here with ProfileTooLongError before anything is
 * signed (the peer checks again).
 */
import type { Api } from '../api.ts'
import { h } from '../dom.ts'
import { debouncer } from '../events.ts'
import type { Panel, Report } from '../panel.ts'
import { shortDid } from '../scene.ts'
import { MAX_PROFILE_BIO_BYTES, MAX_PROFILE_NAME_BYTES } from './social-limits.ts'
import { parseCidText } from './timeline.ts'


export class ProfileTooLongError extends Error {
  name = 'ProfileTooLongError'
}
export class InvalidDidError extends Error {
  name = 'InvalidDidError'
}

/** A profile as the peer gives it. */
export interface ProfileInfo { did: string, name?: string, bio?: string, avatar?: string, entries: number, forked: boolean }

const encoder = new TextEncoder()

function checkLength (value: string, field: string, max: number): void {
  const bytes = encoder.encode(value).length
  if (bytes > max) throw new ProfileTooLongError(`the ${field} is ${bytes} bytes, more than ${max}`)
}

export interface ProfileContext {
  api: Pick<Api, 'get' | 'post'>
  report: Report
  myDid: () => string | null
  /** Following changed: the timeline reloads. */
  changed: () => void
  /** Our profile's avatar CID, as read from the peer or just saved ('' for none). */
  avatarChanged?: (cid: string) => void
}

export interface ProfilePanel extends Panel {
  /** Shows a person's profile (with follow or unfollow). */
  open: (did: string) => Promise<void>
  /** Adds a "profile" button to a row of the people list. */
  decorate: (li: HTMLElement, did: string) => void
  /** Loads our profile into the form and whom we follow. */
  refresh: () => Promise<void>
  /** The profile shown, for tests. */
  shown: () => ProfileInfo | null
}

export function mountProfile (ctx: ProfileContext): ProfilePanel {
  const { api, report } = ctx
  let following: string[] = []
  let shown: ProfileInfo | null = null
  const debounce = debouncer()

  const view = h('div', { id: 'profile-view', 'data-testid': 'profile-view', class: 'profile', hidden: true })
  const name = h('input', { id: 'profile-name-input', 'data-testid': 'profile-name-input', placeholder: 'Name', autocomplete: 'off' })
  const bio = h('textarea', { id: 'profile-bio-input', 'data-testid': 'profile-bio-input', placeholder: 'About you', rows: '2' })
  const avatar = h('input', { id: 'profile-avatar-input', 'data-testid': 'profile-avatar-input', placeholder: 'Avatar CID (VRM / glTF)', autocomplete: 'off' })
  const save = h('button', { id: 'profile-save', 'data-testid': 'profile-save', type: 'submit', text: 'Save' })
  const edit = h('form', { id: 'profile-form' }, h('div', { class: 'row' }, name), bio, h('div', { class: 'row' }, avatar, save))
  const followInput = h('input', { id: 'follow-did', 'data-testid': 'follow-did', placeholder: 'Follow did:key:…', autocomplete: 'off' })
  const followForm = h('form', { id: 'follow-form', class: 'row' }, followInput, h('button', { type: 'submit', 'data-testid': 'follow-send', text: 'Follow' }))
  const followList = h('ul', { id: 'following', 'data-testid': 'following', class: 'list small' })
  document.getElementById('sec-social')?.append(
    view,
    h('details', { id: 'my-profile', 'data-testid': 'my-profile' }, h('summary', { text: 'Your profile' }), edit),
    h('details', { id: 'follows', 'data-testid': 'follows' }, h('summary', { text: 'Following' }), followForm, followList))

  async function setFollow (did: string, on: boolean): Promise<void> {
    if (!/^did:key:z[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(did)) throw new InvalidDidError(`not a did:key: ${did.slice(0, 80)}`)
    await api.post(on ? '/api/v0/social/follow' : '/api/v0/social/unfollow', { did })
    await loadFollowing()
    if (shown?.did === did) render(shown)
    ctx.changed()
  }

  function render (p: ProfileInfo): void {
    const me = p.did === ctx.myDid()
    const isFollowed = following.includes(p.did)
    const close = h('button', { type: 'button', class: 'small close', 'aria-label': 'close', text: '×' })
    close.addEventListener('click', () => { view.hidden = true; shown = null })
    const children: Array<Node | string> = [
      h('div', { class: 'row' }, h('strong', { id: 'profile-name', 'data-testid': 'profile-name', text: (p.name ?? '') !== '' ? p.name! : shortDid(p.did) }), me ? h('span', { class: 'muted small', text: '(you)' }) : '', close),
      h('div', { class: 'small', id: 'profile-bio', 'data-testid': 'profile-bio', text: p.bio ?? '' }),
      h('div', { class: 'row small' }, h('span', { class: 'label', text: 'Avatar:' }), h('code', { id: 'profile-avatar', 'data-testid': 'profile-avatar', text: p.avatar ?? 'none' })),
      h('div', { class: 'row small' }, h('code', { text: p.did }), h('span', { class: 'muted', text: `${p.entries} entries${p.forked ? ' · forked feed' : ''}` }))
    ]
    // Feeds are replicated by following: a stranger's profile arrives with their feed.
    if (p.entries === 0 && !me) children.push(h('p', { class: 'small muted', 'data-testid': 'profile-pending', text: isFollowed ? 'Fetching their feed…' : 'Their feed is not here yet: follow to fetch it.' }))
    if (!me) {
      const b = h('button', { type: 'button', id: 'profile-follow', 'data-testid': 'profile-follow', 'data-following': isFollowed ? 'yes' : 'no', text: isFollowed ? 'Unfollow' : 'Follow' })
      b.addEventListener('click', () => {
        b.disabled = true
        void setFollow(p.did, !isFollowed).catch(err => { report.showError('follow', err) }).finally(() => { b.disabled = false })
      })
      children.push(h('div', { class: 'row' }, b))
    }
    view.replaceChildren(...children)
    view.dataset.did = p.did
    view.hidden = false
  }

  async function open (did: string): Promise<void> {
    try {
      const [p] = await Promise.all([api.get<ProfileInfo>(`/api/v0/social/profile/${encodeURIComponent(did)}`), loadFollowing()])
      const fresh = shown?.did !== p.did || view.hidden
      shown = p
      render(p)
      if (fresh) view.scrollIntoView({ block: 'nearest' })
    } catch (err) {
      report.showError('profile', err)
    }
  }

  async function loadFollowing (): Promise<void> {
    following = (await api.get<{ following: string[] }>('/api/v0/social/following')).following
    followList.replaceChildren(...following.map(did => {
      const who = h('button', { type: 'button', class: 'link', 'data-profile': did, title: did, text: shortDid(did) })
      who.addEventListener('click', () => { void open(did) })
      const un = h('button', { type: 'button', class: 'small', 'data-unfollow': did, text: 'unfollow' })
      un.addEventListener('click', () => { un.disabled = true; void setFollow(did, false).catch(err => { un.disabled = false; report.showError('follow', err) }) })
      return h('li', { 'data-did': did }, who, un)
    }))
    if (following.length === 0) followList.append(h('li', { class: 'muted', text: 'Nobody yet.' }))
  }

  followForm.addEventListener('submit', e => {
    e.preventDefault()
    const did = followInput.value.trim()
    if (did === '') return
    void setFollow(did, true).then(() => { followInput.value = '' }).catch(err => { report.showError('follow', err) })
  })

  edit.addEventListener('submit', e => {
    e.preventDefault()
    save.disabled = true
    void (async () => {
      const body: { name?: string, bio?: string, avatar?: string } = {}
      const n = name.value.trim()
      if (n !== '') { checkLength(n, 'name', MAX_PROFILE_NAME_BYTES); body.name = n }
      checkLength(bio.value, 'bio', MAX_PROFILE_BIO_BYTES)
      body.bio = bio.value
      if (avatar.value.trim() !== '') body.avatar = parseCidText(avatar.value)
      await api.post('/api/v0/social/profile', body)
      report.showInfo('Profile saved')
      if (body.avatar != null) ctx.avatarChanged?.(body.avatar)
      const me = ctx.myDid()
      if (me != null && (shown == null || shown.did === me)) await open(me)
      ctx.changed()
    })().catch(err => { report.showError('profile', err) }).finally(() => { save.disabled = false })
  })

  async function refresh (): Promise<void> {
    const me = ctx.myDid()
    try {
      await loadFollowing()
      if (me == null) return
      const p = await api.get<ProfileInfo>(`/api/v0/social/profile/${encodeURIComponent(me)}`)
      if (document.activeElement !== name && name.value === '') name.value = p.name ?? ''
      if (document.activeElement !== bio && bio.value === '') bio.value = p.bio ?? ''
      if (document.activeElement !== avatar && avatar.value === '') avatar.value = p.avatar ?? ''
      ctx.avatarChanged?.(p.avatar ?? '')
    } catch (err) {
      report.showError('profile', err)
    }
  }

  function decorate (li: HTMLElement, did: string): void {
    const b = h('button', { type: 'button', class: 'small', 'data-profile': did, text: 'profile' })
    b.addEventListener('click', () => { void open(did) })
    li.append(b)
  }

  return {
    open,
    decorate,
    refresh,
    shown: () => shown == null ? null : { ...shown },
    events: {
      // The person shown wrote something (their feed arrived or grew): show the profile anew.
      'feed:entry': msg => {
        const did = shown?.did
        if (did != null && msg.author === did && !view.hidden) debounce('profile', 200, async () => { if (shown?.did === did) await open(did) })
      }
    }
  }
}
