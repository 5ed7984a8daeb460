// Wires the 3D view: its size, walking and sending our pose to the peer, and clicks that select.
import type { Controls } from './controls.ts'
import { $ } from './dom.ts'
import type { View } from './scene.ts'
import type { Store } from './store.ts'

/** Our pose goes to the peer at most this often while we move (20 Hz). */
export const MOVE_SEND_INTERVAL_MS = 50

export interface ViewportContext {
  view: View
  controls: Controls
  store: Pick<Store, 'spaceId' | 'space'>
  /** Sends a message on the event stream; false when it is down. */
  send: (msg: unknown) => boolean
  /** A click hit an object in the view. */
  select: (id: string) => void
  /** A click that hit no object: true when it hit a person's avatar (and showed them). */
  pickPerson?: (ndcX: number, ndcY: number) => boolean
}

export interface Viewport {
  /** Our pose should go to the peer on the next frame, moved or not. */
  poseChanged: () => void
}

export function mountViewport (ctx: ViewportContext): Viewport {
  const { view, controls, store } = ctx
  let lastSent = 0
  let dirty = false

  const canvas = view.canvas
  new ResizeObserver(() => { view.resize(canvas.clientWidth, canvas.clientHeight) }).observe($('view'))
  view.resize(canvas.clientWidth, canvas.clientHeight)
  view.onFirstFrame = () => { performance.mark('peerverse:first-frame') }
  view.onTick = dt => {
    if (store.space == null) return
    if (controls.update(dt)) dirty = true
    const now = performance.now()
    if (dirty && now - lastSent >= MOVE_SEND_INTERVAL_MS) sendPose(now)
  }
  controls.onClickView = (x, y, locked) => {
    const hit = view.pick(x, y)
    if (hit != null) {
      ctx.select(hit)
      if (!locked) return
    } else if (ctx.pickPerson?.(x, y) === true && !locked) return
    if (!locked) controls.lock()
    canvas.focus()
  }
  document.addEventListener('pointerlockchange', () => { $('hint').classList.toggle('locked', controls.locked) })

  function sendPose (now: number): void {
    if (store.spaceId == null) return
    const ok = ctx.send({ type: 'space:move', space: store.spaceId, position: [...view.me.position], rotation: view.myRotation() })
    if (ok) {
      lastSent = now
      dirty = false
    }
  }

  return { poseChanged: () => { dirty = true } }
}
