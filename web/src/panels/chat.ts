// The chat of the space shown: its log and the line to say something.
import type { Api } from '../api.ts'
import { $, formatTime, h } from '../dom.ts'
import { spaceOf } from '../events.ts'
import type { Panel, Report, SpaceLoader } from '../panel.ts'
import type { Store } from '../store.ts'

/** Chat lines kept on screen. */
export const MAX_CHAT_LINES = 500

export interface ChatLine { id: string, author: string, text: string, ts: number }

export interface ChatContext {
  api: Pick<Api, 'get' | 'post'>
  store: Pick<Store, 'did' | 'spaceId' | 'on' | 'nameOf'>
  report: Pick<Report, 'showError'>
}

export type ChatPanel = Panel & SpaceLoader

export function mountChat (ctx: ChatContext): ChatPanel {
  const { api, store, report } = ctx
  const seen = new Set<string>()

  function add (c: ChatLine): void {
    if (seen.has(c.id)) return
    seen.add(c.id)
    const log = $('chat-log')
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8
    log.append(h('li', { 'data-id': c.id, 'data-author': c.author, class: c.author === store.did ? 'mine' : undefined },
      h('time', { text: formatTime(c.ts) }), h('b', { title: c.author, text: store.nameOf(c.author) }), h('span', { class: 'text', text: c.text })))
    while (log.children.length > MAX_CHAT_LINES) log.firstElementChild?.remove()
    if (stick) log.scrollTop = log.scrollHeight
  }

  store.on('space', ({ id, previous }) => {
    if (id === previous) return
    seen.clear()
    $('chat-log').replaceChildren()
  })

  $('chat-form').addEventListener('submit', e => {
    e.preventDefault()
    const input = $<HTMLInputElement>('chat-input')
    const text = input.value.trim()
    if (text === '' || store.spaceId == null) return
    const send = $<HTMLButtonElement>('chat-send')
    send.disabled = true
    void api.post<ChatLine>('/api/v0/space/say', { space: store.spaceId, text })
      .then(c => { input.value = ''; add(c) })
      .catch(err => { report.showError('chat', err) })
      .finally(() => { send.disabled = false; input.focus() })
  })

  return {
    async load (id) {
      const { chat } = await api.get<{ chat: ChatLine[] }>(`/api/v0/space/${encodeURIComponent(id)}/chat`).catch(err => { report.showError('chat', err); return { chat: [] } })
      return () => { for (const c of chat) add(c) }
    },
    events: {
      'space:chat': msg => { if (spaceOf(msg) === store.spaceId) add(msg as unknown as ChatLine) }
    }
  }
}
