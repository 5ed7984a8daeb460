/**
 * Walking: WASD or arrow keys move (Shift runs), the mouse looks around once the view holds the
 * pointer (click it; Esc releases). Without the pointer, ←/→ turn and PageUp/PageDown look up and
 * down, so a keyboard alone is enough. Keys typed into the panel's fields are never taken.
 */
import type { View } from './scene.ts'
import { clamp } from './scene.ts'

/** Walking and running speed, m/s. */
export const WALK_SPEED = 4
export const RUN_SPEED = 9
/** Turning speed with the keyboard, rad/s. */
export const TURN_SPEED = 2.2
/** Radians per pixel of mouse movement. */
export const MOUSE_SENSITIVITY = 0.0025

const KEYS = new Set(['KeyW', 'KeyA', 'KeyS', 'KeyD', 'KeyQ', 'KeyE', 'ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'ShiftLeft', 'ShiftRight', 'PageUp', 'PageDown'])

export class Controls {
  private readonly view: View
  private readonly down = new Set<string>()
  /** Mouse movement since the last update. */
  private dx = 0
  private dy = 0
  onClickView?: (ndcX: number, ndcY: number, locked: boolean) => void

  constructor (view: View) {
    this.view = view
    const canvas = view.canvas
    const typing = (e: Event): boolean => {
      const t = e.target as HTMLElement | null
      return t != null && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)
    }
    window.addEventListener('keydown', e => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey || !KEYS.has(e.code)) return
      this.down.add(e.code)
      e.preventDefault()
    })
    window.addEventListener('keyup', e => { this.down.delete(e.code) })
    window.addEventListener('blur', () => { this.down.clear() })
    canvas.addEventListener('click', e => {
      const r = canvas.getBoundingClientRect()
      const locked = this.locked
      const x = locked ? 0 : ((e.clientX - r.left) / r.width) * 2 - 1
      const y = locked ? 0 : -(((e.clientY - r.top) / r.height) * 2 - 1)
      this.onClickView?.(x, y, locked)
    })
    document.addEventListener('mousemove', e => {
      if (!this.locked) return
      this.dx += e.movementX
      this.dy += e.movementY
    })
  }

  get locked (): boolean { return document.pointerLockElement === this.view.canvas }

  lock (): void {
    if (this.locked) return
    try {
      const p = this.view.canvas.requestPointerLock() as unknown as Promise<void> | undefined
      if (p != null && typeof p.catch === 'function') p.catch(() => {})
    } catch {}
  }

  /** Applies a frame's input to our pose; true when it changed. */
  update (dt: number): boolean {
    const me = this.view.me
    const k = this.down
    const locked = this.locked
    let changed = false
    if (this.dx !== 0 || this.dy !== 0) {
      me.yaw -= this.dx * MOUSE_SENSITIVITY
      me.pitch = clamp(me.pitch - this.dy * MOUSE_SENSITIVITY, -1.45, 1.45)
      this.dx = 0
      this.dy = 0
      changed = true
    }
    let turn = 0
    if (!locked) {
      if (k.has('ArrowLeft')) turn += 1
      if (k.has('ArrowRight')) turn -= 1
    }
    if (k.has('KeyQ')) turn += 1
    if (k.has('KeyE')) turn -= 1
    if (turn !== 0) { me.yaw += turn * TURN_SPEED * dt; changed = true }
    if (k.has('PageUp')) { me.pitch = clamp(me.pitch + TURN_SPEED * 0.6 * dt, -1.45, 1.45); changed = true }
    if (k.has('PageDown')) { me.pitch = clamp(me.pitch - TURN_SPEED * 0.6 * dt, -1.45, 1.45); changed = true }
    let fwd = 0
    let side = 0
    if (k.has('KeyW') || k.has('ArrowUp')) fwd += 1
    if (k.has('KeyS') || k.has('ArrowDown')) fwd -= 1
    if (k.has('KeyD') || (locked && k.has('ArrowRight'))) side += 1
    if (k.has('KeyA') || (locked && k.has('ArrowLeft'))) side -= 1
    if (fwd !== 0 || side !== 0) {
      const speed = (k.has('ShiftLeft') || k.has('ShiftRight') ? RUN_SPEED : WALK_SPEED) * dt / Math.hypot(fwd, side)
      const sin = Math.sin(me.yaw)
      const cos = Math.cos(me.yaw)
      // Forward is -z turned by yaw; right is +x turned by yaw.
      const x = me.position[0] + (-sin * fwd + cos * side) * speed
      const z = me.position[2] + (-cos * fwd - sin * side) * speed
      me.position[0] = clamp(x, 0, this.view.grid.width)
      me.position[2] = clamp(z, 0, this.view.grid.depth)
      changed = true
    }
    return changed
  }
}
