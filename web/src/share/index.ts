/**
 * Sharing in the client: the #share-toggle button (with #share-source: screen or camera) puts our
 * stream on a board in front of where we stand, and the boards of the members near us are drawn in
 * the view (ours too, fed our own encoded stream, as the others see it). Both ride the video socket of the space shown (socket.ts), open while we are in a
 * space: through it our peer tells us of boards and sends the video of the one we view (it picks
 * the nearest in range; the bound is the peer's), and takes our board's note and chunks. Sharing
 * stops when the button is pressed again, the source ends, or we leave the space.
 */
import type { Api } from '../api.ts'
import { $ } from '../dom.ts'
import type { Report } from '../panel.ts'
import { EYE_HEIGHT, type View } from '../scene.ts'
import type { Store } from '../store.ts'
import { Board } from './board.ts'
import { Capture, type ShareSource } from './capture.ts'
import { ShareSocket } from './socket.ts'
import type { Vec3 } from './wire.ts'

/** How far in front of us our board stands (m). */
export const BOARD_DISTANCE_M = 2.5

export interface BoardView { did: string, position: Vec3, frames: number, width: number, height: number }
export interface ShareHookView { sharing: boolean, source: ShareSource | null, encoded: number, sent: number, boards: BoardView[] }

export interface ShareContext {
  api: Pick<Api, 'token'>
  store: Pick<Store, 'spaceId' | 'on' | 'did'>
  view: Pick<View, 'me' | 'scene'>
  report: Pick<Report, 'showError'>
}

export interface SharePanel {
  /** Read-only views for tests. */
  boards: () => BoardView[]
  hook: () => ShareHookView
}

export function mountShare (ctx: ShareContext): SharePanel {
  const { api, store, view, report } = ctx
  const button = $<HTMLButtonElement>('share-toggle')
  const select = $<HTMLSelectElement>('share-source')
  const boards = new Map<string, Board>()
  let socket: ShareSocket | null = null
  let capture: Capture | null = null
  let board: Vec3 | null = null
  /** Our own board, fed our own chunks (what the others near it see). */
  let own: Board | null = null

  function clearBoards (): void {
    for (const b of boards.values()) b.close()
    boards.clear()
  }

  function openSpace (id: string | null): void {
    stopSharing()
    socket?.stop()
    socket = null
    clearBoards()
    if (id == null) return
    const s = new ShareSocket(id, api.token, {
      onMessage: m => {
        if (socket !== s) return
        if (m.type === 'keyframe') { capture?.requestKey(); return }
        const b = boards.get(m.did)
        if (m.type === 'share') {
          if (!m.on) { b?.close(); boards.delete(m.did) } else if (b == null) {
            const nb = new Board(m.did, m.position, view.scene)
            nb.onNeedKey = () => { if (socket === s) s.askKeyframe(m.did) }
            boards.set(m.did, nb)
          } else b.place(m.position)
        } else {
          b?.take(m)
        }
      },
      onOpen: () => { if (socket === s && board != null) s.send({ on: true, position: board }) },
      onClose: () => { if (socket === s) clearBoards() }
    })
    socket = s
    s.start()
  }

  async function startSharing (): Promise<void> {
    const s = socket
    if (s == null) { report.showError('share', new Error('sharing starts when you are in a space')); return }
    const me = view.me
    const at: Vec3 = [me.position[0] - Math.sin(me.yaw) * BOARD_DISTANCE_M, me.position[1] + EYE_HEIGHT, me.position[2] - Math.cos(me.yaw) * BOARD_DISTANCE_M]
    const c = new Capture(select.value === 'camera' ? 'camera' : 'screen', chunk => {
      own?.take(chunk)
      return socket === s && s.sendChunk(chunk)
    }, () => { stopSharing() })
    capture = c
    render()
    try {
      await c.start()
    } catch (err) {
      if (capture === c) { capture = null; render() }
      report.showError('share', err)
      return
    }
    if (capture !== c) return
    board = at
    own = new Board(store.did ?? 'me', at, view.scene)
    s.send({ on: true, position: at })
    render()
  }

  function stopSharing (): void {
    capture?.stop()
    capture = null
    own?.close()
    own = null
    if (board != null) socket?.send({ on: false, position: board })
    board = null
    render()
  }

  function render (): void {
    const on = capture != null
    button.setAttribute('aria-pressed', String(on))
    button.dataset.state = on ? 'on' : 'off'
    button.textContent = on ? 'Stop sharing' : 'Share'
    select.disabled = on
  }

  button.addEventListener('click', () => { if (capture != null) stopSharing(); else void startSharing() })
  store.on('space', ({ id, previous }) => { if (id !== previous) openSpace(id) })
  openSpace(store.spaceId)

  // Boards turn to face us.
  const turn = (): void => {
    for (const b of boards.values()) b.face(view.me.position)
    own?.face(view.me.position)
    requestAnimationFrame(turn)
  }
  requestAnimationFrame(turn)

  const boardList = (): BoardView[] => [...boards.values(), ...own == null ? [] : [own]].map(b => ({ did: b.did, position: [...b.position] as Vec3, frames: b.frames, width: b.width, height: b.height }))
  return {
    boards: boardList,
    hook: () => ({ sharing: board != null, source: capture?.source ?? null, encoded: capture?.counts.encoded ?? 0, sent: socket?.counts.sent ?? 0, boards: boardList() })
  }
}
