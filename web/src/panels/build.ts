// Building: who may build here, place a model by CID or upload, the object list, select, move, remove.
import type { Api } from '../api.ts'
import { $, h } from '../dom.ts'
import { debouncer, spaceOf } from '../events.ts'
import type { Panel, Report, SpaceLoader } from '../panel.ts'
import type { Parcel, View, WorldObject } from '../scene.ts'
import type { SpaceView, Store } from '../store.ts'

export interface BuildContext {
  api: Pick<Api, 'get' | 'post' | 'addContent'>
  store: Pick<Store, 'did' | 'spaceId' | 'space' | 'on' | 'setPolicy'>
  view: Pick<View, 'setObjects' | 'setParcels' | 'objectList' | 'select' | 'selected' | 'retry' | 'spotAhead' | 'myRotation'>
  report: Pick<Report, 'showError'>
}

export interface BuildPanel extends Panel, SpaceLoader {
  /** Selects an object (from the view or the list), or none. */
  select: (id: string | undefined) => void
  /** Puts a model's CID in the place box and places it in front of us. */
  placeModel: (cid: string) => void
  /** The view's count of models loading and failed changed. */
  loadingChanged: (loading: number, failed: number) => void
}

export function mountBuild (ctx: BuildContext): BuildPanel {
  const { api, store, view, report } = ctx
  const debounce = debouncer()
  let objects: WorldObject[] = []
  let parcels: Parcel[] = []

  async function refreshObjects (): Promise<void> {
    const id = store.spaceId
    if (id == null) return
    try {
      const res = await api.get<{ objects: WorldObject[] }>(`/api/v0/space/${encodeURIComponent(id)}/objects`)
      if (store.spaceId !== id) return
      objects = res.objects
      view.setObjects(objects)
      updateSelected()
      renderObjects()
    } catch (err) {
      report.showError('objects', err)
    }
  }

  async function refreshParcels (): Promise<void> {
    const id = store.spaceId
    if (id == null) return
    try {
      const res = await api.get<{ parcels: Parcel[] }>(`/api/v0/ledger/parcels-in/${encodeURIComponent(id)}`)
      if (store.spaceId !== id) return
      const changed = JSON.stringify(res.parcels) !== JSON.stringify(parcels)
      parcels = res.parcels
      if (changed) { view.setParcels(parcels, store.did ?? ''); updateEditHint() }
    } catch (err) {
      report.showError('parcels', err)
    }
  }

  function renderObjects (): void {
    const status = new Map(view.objectList().map(o => [o.id, o]))
    $('objects').replaceChildren(...objects.map(o => {
      const s = status.get(o.id)
      const what = s?.failed === true ? 'failed to load' : s?.loaded === true ? 'loaded' : 'loading'
      const b = h('button', { type: 'button', class: 'link', 'data-object': o.id, text: `${o.model.slice(0, 12)}… @ ${o.position.map(v => v.toFixed(0)).join(',')}` })
      b.addEventListener('click', () => { select(o.id) })
      const li = h('li', { 'data-object': o.id, 'data-state': what, class: o.id === view.selected ? 'current' : undefined }, b, h('span', { class: `muted state-${what.split(' ')[0]}`, title: s?.error ?? '', text: ` ${what}` }))
      if (s?.failed === true) {
        const retry = h('button', { type: 'button', class: 'small', text: 'retry' })
        retry.addEventListener('click', () => { view.retry(o.id) })
        li.append(retry)
      }
      return li
    }))
  }

  function select (id: string | undefined): void {
    view.select(id)
    updateSelected()
    renderObjects()
  }

  function updateSelected (): void {
    const id = view.selected
    $('selected').textContent = id ?? 'none'
    $<HTMLButtonElement>('obj-move').disabled = id == null
    $<HTMLButtonElement>('obj-remove').disabled = id == null
  }

  function updateEditHint (): void {
    const sv = store.space
    const el = $('edit-hint')
    if (sv == null) { el.textContent = ''; return }
    const me = store.did ?? ''
    const mine = parcels.filter(p => p.owner === me).length
    el.dataset.role = sv.owner === me ? 'owner' : sv.policy.editors.includes(me) ? 'editor' : mine > 0 ? 'parcel' : 'visitor'
    el.textContent = sv.owner === me
      ? 'You own this space: you can build anywhere.'
      : sv.policy.editors.includes(me)
        ? 'You are an editor here: you can build anywhere.'
        : mine > 0
          ? `You can build inside your ${mine} parcel${mine === 1 ? '' : 's'} (yellow).`
          : 'Only the owner, its editors and parcel owners build here: your edits would be refused.'
  }

  async function place (cid: string): Promise<void> {
    if (store.spaceId == null) { report.showError('place', new Error('enter a space first')); return }
    try {
      const { id } = await api.post<{ id: string }>('/api/v0/space/object/place', { space: store.spaceId, model: cid, position: view.spotAhead(3), rotation: view.myRotation() })
      await refreshObjects()
      select(id)
    } catch (err) {
      report.showError('place', err)
    }
  }

  function placeModel (cid: string): Promise<void> {
    $<HTMLInputElement>('place-cid').value = cid
    return place(cid)
  }

  store.on('space', ({ id, previous }) => {
    if (id === previous) return
    if (id == null) {
      view.setObjects([])
      view.setParcels([], '')
    } else {
      view.select(undefined)
      updateSelected()
    }
  })

  $('place-form').addEventListener('submit', e => {
    e.preventDefault()
    const cid = $<HTMLInputElement>('place-cid').value.trim()
    if (cid === '') { report.showError('place', new Error('give the CID of a glTF or GLB model')); return }
    void place(cid)
  })

  $<HTMLInputElement>('upload-file').addEventListener('change', () => {
    const input = $<HTMLInputElement>('upload-file')
    const file = input.files?.[0]
    if (file == null) return
    const status = $('upload-status')
    if (!/\.(glb|gltf)$/i.test(file.name)) { report.showError('upload', new Error('choose a .glb or .gltf file')); return }
    status.textContent = `adding ${file.name}…`
    void api.addContent(file, file.name)
      .then(async ({ cid }) => {
        status.textContent = `added ${cid.slice(0, 14)}…`
        status.title = cid
        await placeModel(cid)
      })
      .catch(err => { status.textContent = ''; report.showError('upload', err) })
      .finally(() => { input.value = '' })
  })

  $('obj-move').addEventListener('click', () => {
    const id = view.selected
    if (id == null || store.spaceId == null) return
    void api.post('/api/v0/space/object/move', { space: store.spaceId, id, position: view.spotAhead(3) })
      .then(refreshObjects)
      .catch(err => { report.showError('move', err) })
  })

  $('obj-remove').addEventListener('click', () => {
    const id = view.selected
    if (id == null || store.spaceId == null) return
    void api.post('/api/v0/space/object/remove', { space: store.spaceId, id })
      .then(async () => { select(undefined); await refreshObjects() })
      .catch(err => { report.showError('remove', err) })
  })

  return {
    select,
    placeModel: cid => { void placeModel(cid) },
    loadingChanged (loading, failed) {
      const el = $('loading')
      el.hidden = loading === 0 && failed === 0
      el.dataset.loading = String(loading)
      el.dataset.failed = String(failed)
      el.textContent = [loading > 0 ? `Loading ${loading} model${loading === 1 ? '' : 's'} from the swarm…` : '', failed > 0 ? `${failed} failed to load` : ''].filter(Boolean).join(' · ')
      renderObjects()
    },
    async load () {
      await Promise.all([refreshObjects(), refreshParcels()])
      return updateEditHint
    },
    events: {
      'space:world': msg => { if (spaceOf(msg) === store.spaceId) debounce('objects', 80, refreshObjects) },
      'space:policy': msg => {
        if (spaceOf(msg) !== store.spaceId || store.space == null) return
        store.setPolicy(msg.policy as SpaceView['policy'])
        updateEditHint()
      },
      'ledger:block': () => { if (store.spaceId != null) debounce('parcels', 500, refreshParcels) }
    }
  }
}
