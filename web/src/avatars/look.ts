/**
 * Our avatar in the spaces we are in: the profile's avatar CID goes with our presence (the peer's
 * look), so every other page draws it. It is sent when we enter a space and when the profile's
 * avatar changes (saved in the profile form, or first read from the peer), once per space and
 * value; a failed send is tried again at the next change.
 */
import type { Api } from '../api.ts'
import type { Report } from '../panel.ts'
import type { Store } from '../store.ts'

export interface LookContext {
  api: Pick<Api, 'post'>
  store: Pick<Store, 'spaceId' | 'on'>
  report: Pick<Report, 'showError'>
}

export interface Look {
  /** The profile's avatar CID ('' for none): sent to the space shown when it differs from what was sent. */
  setAvatar: (cid: string) => void
  /** The profile's avatar CID as last known ('' for none). */
  current: () => string
  /** The avatar last sent to each space (for tests). */
  sent: () => Record<string, string>
}

export function mountLook (ctx: LookContext): Look {
  const { api, store, report } = ctx
  let avatar = ''
  const sent = new Map<string, string>()

  function sync (): void {
    const id = store.spaceId
    // No avatar in the profile: the space keeps what it has (a default is drawn for nobody's).
    if (id == null || avatar === '' || sent.get(id) === avatar) return
    const value = avatar
    sent.set(id, value)
    api.post('/api/v0/space/look', { space: id, avatar: value }).catch(err => {
      if (sent.get(id) === value) sent.delete(id)
      report.showError('avatar', err)
    })
  }

  store.on('space', () => { sync() })
  return {
    setAvatar (cid: string) { avatar = cid; sync() },
    current: () => avatar,
    sent: () => Object.fromEntries(sent)
  }
}
