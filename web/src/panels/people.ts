// The people here: the list (with a pay button each) and their avatars, from presence events.
import type { Api } from '../api.ts'
import { $, h } from '../dom.ts'
import { spaceOf } from '../events.ts'
import type { Panel, Report, SpaceLoader } from '../panel.ts'
import { shortDid, type Member, type View } from '../scene.ts'
import type { Store } from '../store.ts'

export interface PeopleContext {
  api: Pick<Api, 'get'>
  store: Store
  view: Pick<View, 'me' | 'upsertMember' | 'removeMember' | 'clearMembers'>
  report: Pick<Report, 'showError'>
  /** Someone's pay button: fill the wallet's pay form with their did. */
  payTo: (did: string) => void
  /** Add controls of other parts (voice, moderation) to a person's row, in order. */
  decorate?: Array<(li: HTMLElement, did: string) => void>
}

export type PeoplePanel = Panel & SpaceLoader & {
  /** Draws the list again (another part's controls on the rows changed). */
  render: () => void
}

export function mountPeople (ctx: PeopleContext): PeoplePanel {
  const { api, store, view, report } = ctx

  function render (): void {
    const list = store.people()
    $('people-count').textContent = store.spaceId == null ? '' : `(${list.length})`
    $('people').replaceChildren(...list.map(p => {
      const me = p.did === store.did
      const li = h('li', { 'data-did': p.did, class: me ? 'me' : undefined }, h('span', { class: 'name', title: p.did, text: (p.name !== '' ? p.name : shortDid(p.did)) + (me ? ' (you)' : '') }))
      if (!me) {
        const pay = h('button', { type: 'button', class: 'small', 'data-pay': p.did, text: 'pay' })
        pay.addEventListener('click', () => { ctx.payTo(p.did) })
        li.append(pay)
      }
      for (const d of ctx.decorate ?? []) d(li, p.did)
      return li
    }))
    if (list.length === 1 && store.spaceId != null) $('people').append(h('li', { class: 'muted', text: 'Nobody else here yet.' }))
  }

  store.on('people', render)
  store.on('space', ({ id, previous }) => {
    if (id === previous) return
    view.clearMembers()
    if (id == null) render()
  })

  return {
    render,
    async load (id, switched) {
      const who = await api.get<{ members: Member[] }>(`/api/v0/space/${encodeURIComponent(id)}/who`).catch(err => { report.showError('people', err); return { members: [] } })
      return () => {
        for (const m of who.members) {
          if (m.did !== store.did) view.upsertMember(m)
          else if (switched) {
            view.me.position = [...m.position]
            const q = m.rotation
            view.me.yaw = Math.atan2(2 * (q[3] * q[1] + q[0] * q[2]), 1 - 2 * (q[1] * q[1] + q[0] * q[0]))
            view.me.pitch = 0
          }
        }
        store.setPeople(who.members)
      }
    },
    events: {
      'space:presence': msg => {
        if (spaceOf(msg) !== store.spaceId || msg.did === store.did) return
        const m = msg as unknown as Member
        view.upsertMember(m)
        store.upsertPerson(m)
      },
      'space:leave': msg => {
        if (spaceOf(msg) !== store.spaceId) return
        view.removeMember(String(msg.did))
        store.removePerson(String(msg.did))
      }
    }
  }
}
