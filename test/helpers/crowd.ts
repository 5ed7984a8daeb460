/**
 * A crowd for the browser client, through its event stream: an init script (for playwright's
 * `addInitScript`) that keeps the page's event WebSocket and lets the test or benchmark hand it
 * presence messages of made-up members, as the peer would send them. The members walk small
 * circles in front of the newcomer's spot (the middle of the grid, looking towards -z), sending
 * frames at CROWD_SEND_HZ. Deterministic: positions come from the member's index alone.
 *
 * In the page, after the script: `window.__crowd.start(space, n, options)`, `.stop()`, `.count()`.
 */

/** How often each made-up member sends a frame while it walks. */
export const CROWD_SEND_HZ = 10

export interface CrowdOptions {
  /** Where the crowd stands: its centre (x, z), and how far the members spread (metres). */
  center?: [number, number]
  spread?: number
  /** Walk (true) or stand still. */
  moving?: boolean
}

/** Runs in the page before its own scripts (playwright serialises it). */
export function crowdInitScript (sendHz: number): void {
  const w = window as unknown as { WebSocket: typeof WebSocket, __crowd?: unknown }
  const Native = w.WebSocket
  let socket: WebSocket | undefined
  class Watched extends Native {
    constructor (url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      if (String(url).includes('/api/v0/events')) socket = this
    }
  }
  w.WebSocket = Watched
  let timer: ReturnType<typeof setInterval> | undefined
  let members: Array<{ did: string, name: string, x: number, z: number, r: number, phase: number }> = []
  let space = ''
  let moving = true
  const emit = (msg: unknown): void => { socket?.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(msg) })) }
  const tick = (): void => {
    const now = Date.now()
    for (const m of members) {
      const a = moving ? m.phase + now / 1000 * (0.6 + (m.r % 0.5)) : m.phase
      const yaw = a + Math.PI / 2
      emit({
        type: 'space:presence',
        space,
        did: m.did,
        name: m.name,
        avatar: '',
        position: [m.x + Math.cos(a) * m.r, 0, m.z + Math.sin(a) * m.r],
        rotation: [0, Math.sin(-yaw / 2), 0, Math.cos(-yaw / 2)],
        time: now,
        moving
      })
    }
  }
  const stop = (): void => {
    if (timer != null) clearInterval(timer)
    timer = undefined
    for (const m of members) emit({ type: 'space:leave', space, did: m.did })
    members = []
  }
  w.__crowd = {
    start (id: string, n: number, options: { center?: [number, number], spread?: number, moving?: boolean } = {}) {
      stop()
      space = id
      moving = options.moving ?? true
      const [cx, cz] = options.center ?? [128, 100]
      const spread = options.spread ?? 24
      const names = ['ada', 'bob', 'chidi', 'dana', 'emeka', 'fatima', 'gus', 'hana', 'ivan', 'june', 'kofi', 'lena']
      for (let i = 0; i < n; i++) {
        // A golden-angle spiral: evenly spread, the same every run.
        const k = Math.sqrt((i + 0.5) / Math.max(1, n))
        const t = i * 2.399963
        members.push({
          did: `did:key:z6MkCrowd${String(i).padStart(4, '0')}${'x'.repeat(36)}`,
          name: `${names[i % names.length]} ${i}`,
          x: cx + Math.cos(t) * k * spread,
          z: cz + Math.sin(t) * k * spread * 0.6,
          r: 0.8 + (i % 5) * 0.2,
          phase: i * 0.7
        })
      }
      tick()
      timer = setInterval(tick, 1000 / sendHz)
    },
    stop,
    count: () => members.length,
    ready: () => socket?.readyState === 1
  }
}
