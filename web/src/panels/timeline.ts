/**
 * The timeline: posts of the people we follow and ours, newest first, with their replies threaded
 * under them and their likes counted; a form to post (text and, optionally, an image: a content
 * CID from the swarm or a file added through the peer). It reloads from the peer's timeline on
 * every `feed:entry` event (debounced), so posts, replies and likes arrive live. Input over the
 * feed's limits and an image that is not one are refused here with a named error before anything
 * is signed; the peer checks again (InvalidEntryError). Replies to our posts come from anyone (the
 * peer's inbox accepts them), so a small count says how many arrived since we last looked.
 */
import type { Api } from '../api.ts'
import { formatTime, h } from '../dom.ts'
import { debouncer } from '../events.ts'
import type { Panel, Report } from '../panel.ts'
import { shortDid } from '../scene.ts'
import { MAX_IMAGE_BYTES, MAX_POST_TEXT_BYTES } from './social-limits.ts'

/** Entries the timeline asks the peer for (the peer's MAX_TIMELINE_LIMIT). */
export const TIMELINE_PAGE = 200
/** How long the check of an image CID may wait for the swarm. */
export const IMAGE_CHECK_TIMEOUT_MS = 20_000
/** Types a browser draws as an image. */
export const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif']
/** Wait after a feed event before reloading (a burst of entries is one reload). */
export const TIMELINE_RELOAD_MS = 150

export class PostTooLongError extends Error {
  name = 'PostTooLongError'
}
export class NotAnImageError extends Error {
  name = 'NotAnImageError'
}
export class ImageTooLargeError extends Error {
  name = 'ImageTooLargeError'
}
export class ImageUnavailableError extends Error {
  name = 'ImageUnavailableError'
}
export class InvalidCidError extends Error {
  name = 'InvalidCidError'
}

/** An entry of the peer's timeline. */
export interface TimelineItem {
  id: string
  author: string
  name?: string
  seq: number
  ts: number
  kind: string
  text?: string
  to?: string
  attachments?: string[]
  likes: number
}

/** A post as the test hook gives it. */
export interface PostView {
  id: string
  author: string
  name?: string
  text: string
  image?: string
  likes: number
  replies: Array<{ id: string, author: string, text: string, likes: number }>
}

const encoder = new TextEncoder()

/** Checks a post's text against the feed's limit; PostTooLongError otherwise. */
export function checkPostText (text: string): void {
  const bytes = encoder.encode(text).length
  if (bytes > MAX_POST_TEXT_BYTES) throw new PostTooLongError(`the text is ${bytes} bytes, more than ${MAX_POST_TEXT_BYTES}`)
}

/** A content CID as typed (CIDv1 base32 or CIDv0); InvalidCidError otherwise. */
export function parseCidText (text: string): string {
  const t = text.trim()
  if (!/^(b[a-z2-7]{20,200}|Qm[1-9A-HJ-NP-Za-km-z]{44})$/.test(t)) throw new InvalidCidError(`not a content CID: ${t.slice(0, 80)}`)
  return t
}

/** Posts with their replies under them (a reply to a reply joins its root's thread), newest post first. */
export function thread (items: TimelineItem[]): { posts: TimelineItem[], replies: Map<string, TimelineItem[]> } {
  const byId = new Map(items.map(i => [i.id, i]))
  const rootOf = (i: TimelineItem): string | undefined => {
    let cur: TimelineItem | undefined = i
    for (let hops = 0; cur?.kind === 'reply' && cur.to != null && hops < 64; hops++) {
      const parent = byId.get(cur.to)
      if (parent == null) return undefined
      cur = parent
    }
    return cur?.kind === 'post' ? cur.id : undefined
  }
  const posts: TimelineItem[] = []
  const replies = new Map<string, TimelineItem[]>()
  for (const i of items) {
    const root = i.kind === 'reply' ? rootOf(i) : undefined
    if (root == null) { posts.push(i); continue }
    const list = replies.get(root) ?? []
    list.unshift(i) // items are newest first: replies read oldest first
    replies.set(root, list)
  }
  return { posts, replies }
}

export interface TimelineContext {
  api: Pick<Api, 'get' | 'post' | 'addContent' | 'authHeader' | 'token'>
  report: Report
  /** Opens a person's profile (a post's author). */
  openProfile: (did: string) => void
  /** Our own did, once known (for the count of new replies to our posts). */
  myDid?: () => string | null
}

export interface TimelinePanel extends Panel {
  refresh: () => Promise<void>
  hook: () => { posts: PostView[], newReplies: number }
}

/** Ids of others' replies to `me`'s posts, from a threaded timeline. */
export function repliesToMe (posts: TimelineItem[], replies: Map<string, TimelineItem[]>, me: string | null | undefined): string[] | null {
  if (me == null) return null
  return posts.filter(p => p.author === me).flatMap(p => (replies.get(p.id) ?? []).filter(r => r.author !== me).map(r => r.id))
}

/**
 * The "new replies" badge: counts replies to our posts not yet seen; a click marks them seen.
 * `update` takes the replies to our posts now shown (null while our did is unknown).
 */
function newRepliesBadge (): { el: HTMLButtonElement, update: (ids: string[] | null) => void, count: () => number } {
  const seen = new Set<string>()
  let first = true
  let fresh: string[] = []
  const el = h('button', { id: 'new-replies', 'data-testid': 'new-replies', type: 'button', class: 'small', hidden: true, title: 'Mark as seen' })
  const show = (): void => {
    el.hidden = fresh.length === 0
    el.textContent = `${fresh.length} new repl${fresh.length === 1 ? 'y' : 'ies'} to your posts`
  }
  el.addEventListener('click', () => { for (const id of fresh) seen.add(id); fresh = []; show() })
  return {
    el,
    update: ids => {
      if (ids == null) return
      // What is there at the first load is not new.
      if (first) for (const id of ids) seen.add(id)
      first = false
      fresh = ids.filter(id => !seen.has(id))
      show()
    },
    count: () => fresh.length
  }
}

export function mountTimeline (ctx: TimelineContext): TimelinePanel {
  const { api, report } = ctx
  const debounce = debouncer()
  const liked = new Set<string>()
  const rows = new Map<string, HTMLLIElement>()
  let view: PostView[] = []

  const list = h('ol', { id: 'timeline', 'data-testid': 'timeline', class: 'feed' })
  const text = h('textarea', { id: 'post-text', 'data-testid': 'post-text', placeholder: 'Write a post', rows: '2' })
  const image = h('input', { id: 'post-image', 'data-testid': 'post-image', placeholder: 'Image CID (optional)', autocomplete: 'off' })
  const file = h('input', { id: 'post-file', 'data-testid': 'post-file', type: 'file', accept: IMAGE_TYPES.join(',') })
  const send = h('button', { id: 'post-send', 'data-testid': 'post-send', type: 'submit', text: 'Post' })
  const state = h('span', { id: 'post-state', 'data-testid': 'post-state', class: 'small muted' })
  const form = h('form', { id: 'post-form' }, text, h('div', { class: 'row' }, image), h('div', { class: 'row' }, h('label', { class: 'file' }, 'Add an image ', file), state, send))
  const badge = newRepliesBadge()
  const section = document.getElementById('sec-social')
  section?.append(h('h2', { id: 'h-social', text: 'Timeline' }), badge.el, form, list)

  /** Asks the peer what an image CID holds; refuses what is not an image (or too large to show). */
  async function checkImage (cid: string): Promise<void> {
    let res: Response
    try {
      res = await fetch(`/content/${encodeURIComponent(cid)}?max=${MAX_IMAGE_BYTES}`, { method: 'HEAD', headers: api.authHeader, cache: 'no-store', signal: AbortSignal.timeout(IMAGE_CHECK_TIMEOUT_MS) })
    } catch (err) {
      throw new ImageUnavailableError(`${cid} could not be fetched (${(err as Error).name === 'TimeoutError' ? 'no answer from the swarm in time' : (err as Error).message})`)
    }
    if (res.status === 413) throw new ImageTooLargeError(`${cid} is more than ${MAX_IMAGE_BYTES} bytes`)
    if (!res.ok) throw new ImageUnavailableError(`${cid} could not be fetched (HTTP ${res.status})`)
    const type = (res.headers.get('content-type') ?? '').split(';')[0].trim()
    if (!IMAGE_TYPES.includes(type)) throw new NotAnImageError(`${cid} is ${type === '' ? 'of no known type' : type}, not an image`)
  }

  function imageUrl (cid: string): string {
    return `/content/${encodeURIComponent(cid)}?max=${MAX_IMAGE_BYTES}&token=${encodeURIComponent(api.token)}`
  }

  file.addEventListener('change', () => {
    const f = file.files?.[0]
    if (f == null) return
    file.value = ''
    if (!IMAGE_TYPES.includes(f.type)) { report.showError('post', new NotAnImageError(`${f.name} is ${f.type === '' ? 'of no known type' : f.type}, not an image`)); return }
    if (f.size > MAX_IMAGE_BYTES) { report.showError('post', new ImageTooLargeError(`${f.name} is ${f.size} bytes, more than ${MAX_IMAGE_BYTES}`)); return }
    state.textContent = 'adding the image…'
    void api.addContent(f, f.name)
      .then(({ cid }) => { image.value = cid; state.textContent = 'image added' })
      .catch(err => { state.textContent = ''; report.showError('post', err) })
  })

  form.addEventListener('submit', e => {
    e.preventDefault()
    const body = text.value.trim()
    if (body === '') return
    send.disabled = true
    state.textContent = 'posting…'
    void (async () => {
      checkPostText(body)
      const attachments: string[] = []
      if (image.value.trim() !== '') {
        const cid = parseCidText(image.value)
        await checkImage(cid)
        attachments.push(cid)
      }
      await api.post('/api/v0/social/post', attachments.length > 0 ? { text: body, attachments } : { text: body })
      text.value = ''
      image.value = ''
      state.textContent = ''
      await refresh()
    })().catch(err => { state.textContent = ''; report.showError('post', err) })
      .finally(() => { send.disabled = false })
  })

  function author (did: string, name: string | undefined): HTMLElement {
    const b = h('button', { type: 'button', class: 'link author', 'data-profile': did, title: did, text: name != null && name !== '' ? name : shortDid(did) })
    b.addEventListener('click', () => { ctx.openProfile(did) })
    return b
  }

  function likeButton (id: string, likes: number): HTMLButtonElement {
    const b = h('button', { type: 'button', class: 'small like', 'data-like': id, title: 'Like', text: `♥ ${likes}` })
    b.disabled = liked.has(id)
    b.addEventListener('click', () => {
      b.disabled = true
      void api.post('/api/v0/social/like', { of: id })
        .then(async () => { liked.add(id); await refresh() })
        .catch(err => { b.disabled = false; report.showError('like', err) })
    })
    return b
  }

  function replyRow (r: TimelineItem): HTMLLIElement {
    return h('li', { class: 'reply', 'data-id': r.id, 'data-author': r.author },
      author(r.author, r.name), h('time', { text: formatTime(r.ts) }), h('span', { class: 'text', text: r.text ?? '' }), likeButton(r.id, r.likes))
  }

  /** A post's row: made once (its reply box keeps what is typed), its parts updated on reloads. */
  function postRow (p: TimelineItem): HTMLLIElement {
    let li = rows.get(p.id)
    if (li == null) {
      const input = h('input', { class: 'reply-text', 'data-testid': 'reply-text', placeholder: 'Reply', autocomplete: 'off' })
      const go = h('button', { type: 'submit', class: 'small', 'data-testid': 'reply-send', text: 'Reply' })
      const replyForm = h('form', { class: 'row reply-form' }, input, go)
      replyForm.addEventListener('submit', e => {
        e.preventDefault()
        const body = input.value.trim()
        if (body === '') return
        go.disabled = true
        void (async () => {
          checkPostText(body)
          await api.post('/api/v0/social/reply', { to: p.id, text: body })
          input.value = ''
          await refresh()
        })().catch(err => { report.showError('reply', err) }).finally(() => { go.disabled = false })
      })
      li = h('li', { class: 'post', 'data-id': p.id, 'data-author': p.author },
        h('div', { class: 'meta' }), h('div', { class: 'text', text: p.text ?? '' }))
      const cid = p.attachments?.[0]
      if (cid != null) {
        const img = h('img', { class: 'post-image', 'data-cid': cid, 'data-state': 'loading', alt: 'image ' + cid, src: imageUrl(cid) })
        const caption = h('div', { class: 'small state-failed', hidden: true })
        img.addEventListener('load', () => { img.dataset.state = 'loaded' })
        img.addEventListener('error', () => {
          img.dataset.state = 'failed'
          img.hidden = true
          caption.hidden = false
          caption.textContent = `NotAnImageError: ${cid} could not be shown as an image`
        })
        li.append(img, caption)
      }
      li.append(h('ol', { class: 'replies' }), replyForm)
      rows.set(p.id, li)
    }
    const meta = li.querySelector('.meta') as HTMLElement
    const replyTo = p.kind === 'reply' && p.to != null ? h('span', { class: 'small muted', text: `reply to ${p.to.slice(-8)}` }) : ''
    meta.replaceChildren(author(p.author, p.name), h('time', { text: formatTime(p.ts) }), replyTo, likeButton(p.id, p.likes))
    return li
  }

  let loading: Promise<void> | null = null
  let again = false

  /** Reloads the timeline from the peer (one load at a time; a call during one runs once more after). */
  async function refresh (): Promise<void> {
    if (loading != null) { again = true; return await loading }
    loading = (async () => {
      do {
        again = false
        const { entries } = await api.get<{ entries: TimelineItem[] }>(`/api/v0/social/feed?limit=${TIMELINE_PAGE}`)
        render(entries)
      } while (again)
    })()
    try { await loading } catch (err) { report.showError('timeline', err) } finally { loading = null }
  }

  function render (entries: TimelineItem[]): void {
    const { posts, replies } = thread(entries)
    const keep = new Set(posts.map(p => p.id))
    for (const id of [...rows.keys()]) if (!keep.has(id)) rows.delete(id)
    const lis = posts.map(p => {
      const li = postRow(p)
      const rs = replies.get(p.id) ?? []
      ;(li.querySelector('.replies') as HTMLElement).replaceChildren(...rs.map(replyRow))
      return li
    })
    const same = lis.length === list.children.length && lis.every((li, i) => list.children[i] === li)
    if (!same) list.replaceChildren(...lis)
    if (lis.length === 0) list.replaceChildren(h('li', { class: 'muted small', text: 'Nothing yet: post something, or follow someone.' }))
    badge.update(repliesToMe(posts, replies, ctx.myDid?.()))
    view = posts.map(p => ({
      id: p.id,
      author: p.author,
      name: p.name,
      text: p.text ?? '',
      image: p.attachments?.[0],
      likes: p.likes,
      replies: (replies.get(p.id) ?? []).map(r => ({ id: r.id, author: r.author, text: r.text ?? '', likes: r.likes }))
    }))
  }

  return {
    refresh,
    hook: () => ({ posts: view.map(p => ({ ...p, replies: p.replies.map(r => ({ ...r })) })), newReplies: badge.count() }),
    events: {
      'feed:entry': () => { debounce('timeline', TIMELINE_RELOAD_MS, refresh) }
    }
  }
}

