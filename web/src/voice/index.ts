/**
 * Voice in the client: the microphone toggle (#voice-toggle) and push-to-talk (hold T while the
 * microphone is off), the voice socket of the space shown, one Speaker per heard member placed at
 * its avatar, and the listener at our own pose, updated every animation frame. Also the speaking
 * indicators (avatar name tags and the people list) and the per-person volume slider and mute
 * in the people list (a mute is silenced here at once and told to our peer, which then stops
 * asking for that member's audio).
 *
 * What is heard is decided by our peer (range, the bound on speakers, bans, blocks and mutes); the
 * client plays what arrives, and fades to silence at HEARING_RANGE_M on its own as well.
 */
import type { Api } from '../api.ts'
import { $, h } from '../dom.ts'
import type { EventHandlers } from '../events.ts'
import type { Report } from '../panel.ts'
import { EYE_HEIGHT, type View } from '../scene.ts'
import type { Store } from '../store.ts'
import { Capture } from './capture.ts'
import { dropIdleSpeakers, MAX_VOLUME, Output, Speaker, type Vec3 } from './playback.ts'
import { VoiceSocket } from './socket.ts'
import type { HeardFrame, OwnFrame } from './wire.ts'

/** The push-to-talk key (held while the microphone is off). */
export const PUSH_TO_TALK_CODE = 'KeyT'
/** How often the jitter buffers are pumped (ms). */
export const PUMP_INTERVAL_MS = 10
/** A member counts as speaking above this played level (0-1), or our own above this frame level (0-255). */
export const SPEAKING_LEVEL = 0.01
export const OWN_SPEAKING_LEVEL = 8
/** A talking note from the peer counts for this long (ms) unless a later one says otherwise. */
export const TALKING_HOLD_MS = 1500
/** We count as sending while our last frame went out within this long (ms). */
export const SENDING_MS = 500

export interface VoicePeerView {
  did: string
  /** What is being played from this member now, 0-1. */
  level: number
  /** Frames from this member arrived within the last RECEIVING_MS. */
  receiving: boolean
  /** The jitter buffer: mean delay over the fastest path, its target, measured jitter (ms); frames late, concealed. */
  delayMs: number
  targetMs: number
  jitterMs: number
  late: number
  concealed: number
  played: number
  /** The decoder: its state, frames in it, errors so far. */
  decoder: { state: string, decoding: number, errors: number }
}

export interface VoiceHookView { on: boolean, muted: boolean, peers: VoicePeerView[] }

export interface VoiceContext {
  api: Pick<Api, 'get' | 'post' | 'token'>
  store: Pick<Store, 'did' | 'spaceId' | 'on' | 'people'>
  view: Pick<View, 'me' | 'avatarList' | 'setSpeaking'>
  report: Pick<Report, 'showError'>
}

export interface VoicePanel {
  events: EventHandlers
  /** Adds a person's voice controls (volume, mute) to their row in the people list. */
  decorate: (li: HTMLElement, did: string) => void
  /** Read-only views for tests. */
  hook: () => VoiceHookView
  spectrum: () => Array<{ hz: number, db: number }>
}

export function mountVoice (ctx: VoiceContext): VoicePanel {
  const { api, store, view, report } = ctx
  const button = $<HTMLButtonElement>('voice-toggle')
  const out = new Output()
  const speakers = new Map<string, Speaker>()
  const volumes = new Map<string, number>()
  const mutedHere = new Set<string>()
  const talking = new Map<string, { talking: boolean, at: number }>()
  const shown = new Map<string, boolean>()
  let socket: VoiceSocket | null = null
  let socketState: 'off' | 'connecting' | 'open' | 'closed' = 'off'
  let capture: Capture | null = null
  let nextSeq = (Math.random() * 0x1_0000_0000) >>> 0
  let micOn = false
  let ptt = false
  let lastSent = -Infinity
  let ownLevel = 0
  let failed: string | null = null

  // -- hearing ---------------------------------------------------------------------------------

  function resume (): void {
    if (out.ctx.state !== 'running') void out.ctx.resume().catch(() => {})
  }
  resume()
  for (const type of ['pointerdown', 'keydown', 'touchstart']) window.addEventListener(type, resume, { capture: true })
  out.ctx.addEventListener('statechange', render)

  function openSpace (id: string | null): void {
    socket?.stop()
    socket = null
    for (const s of speakers.values()) s.close()
    speakers.clear()
    talking.clear()
    socketState = 'off'
    if (id == null) { render(); return }
    const s = new VoiceSocket(id, api.token, {
      onFrame: heard,
      onState: (state, detail) => {
        if (socket !== s) return
        socketState = state
        if (state === 'closed' && detail?.code === 1008) report.showError('voice', new Error(`voice refused: ${detail.reason ?? ''}`))
        render()
      }
    })
    socket = s
    s.start()
    render()
    void restoreMutes(id)
  }

  /** The mutes our peer keeps for this space (they outlive a reload): shown on the buttons and silenced here. */
  async function restoreMutes (id: string): Promise<void> {
    try {
      const state = await api.get<{ voiceMuted?: string[] }>(`/api/v0/voice?space=${encodeURIComponent(id)}`)
      if (store.spaceId !== id) return
      for (const did of state.voiceMuted ?? []) {
        mutedHere.add(did)
        speakers.get(did)?.setMuted(true)
        for (const b of document.querySelectorAll<HTMLButtonElement>(`button[data-voice-mute="${CSS.escape(did)}"]`)) paintMute(b, true)
      }
    } catch {}
  }

  function heard (f: HeardFrame): void {
    if (f.did === store.did) return
    let s = speakers.get(f.did)
    if (s == null) {
      s = new Speaker(out, f.did)
      s.setVolume(volumes.get(f.did) ?? 1)
      s.setMuted(mutedHere.has(f.did))
      speakers.set(f.did, s)
    }
    if (mutedHere.has(f.did)) { s.lastArrival = performance.now(); return }
    s.receive(f)
  }

  setInterval(() => {
    const now = performance.now()
    for (const did of dropIdleSpeakers(speakers, now)) talking.delete(did)
    for (const s of speakers.values()) s.pump()
  }, PUMP_INTERVAL_MS)

  /** Every animation frame: the listener at our ears, each speaker at its avatar, the indicators. */
  function frame (): void {
    requestAnimationFrame(frame)
    const me = view.me
    const ears: Vec3 = [me.position[0], me.position[1] + EYE_HEIGHT, me.position[2]]
    out.setListener(ears, me.yaw)
    if (speakers.size > 0) {
      const where = new Map(view.avatarList().map(a => [a.did, a.position]))
      for (const s of speakers.values()) s.setPosition(where.get(s.did) ?? [ears[0], ears[1] - 1.5, ears[2]], ears)
    }
    indicators()
  }
  requestAnimationFrame(frame)

  function speaking (did: string): boolean {
    if (did === store.did) return sending() && ownLevel >= OWN_SPEAKING_LEVEL
    if (mutedHere.has(did)) return false
    const s = speakers.get(did)
    if (s?.receiving === true && s.level() > SPEAKING_LEVEL) return true
    const t = talking.get(did)
    return t != null && t.talking && performance.now() - t.at < TALKING_HOLD_MS
  }

  function indicators (): void {
    for (const p of store.people()) {
      const on = speaking(p.did)
      if (shown.get(p.did) === on) continue
      shown.set(p.did, on)
      view.setSpeaking(p.did, on)
      document.querySelector(`#people li[data-did="${CSS.escape(p.did)}"]`)?.classList.toggle('speaking', on)
    }
  }

  // -- talking ---------------------------------------------------------------------------------

  function sending (): boolean { return performance.now() - lastSent < SENDING_MS }

  function sendFrame (f: OwnFrame): void {
    nextSeq = (f.seq + 1) >>> 0
    ownLevel = f.level
    if (socket?.send(f) === true) {
      const was = sending()
      lastSent = performance.now()
      if (!was) render()
    }
  }

  function setCapture (want: boolean): void {
    if (want === (capture != null)) return
    if (!want) {
      capture?.stop()
      capture = null
      lastSent = -Infinity
      render()
      return
    }
    resume()
    const c = new Capture(nextSeq, sendFrame, err => {
      if (capture !== c) return
      capture = null
      micOn = false
      failed = err.message
      report.showError('voice', err)
      render()
    })
    capture = c
    failed = null
    c.start().catch((err: Error) => {
      if (capture !== c) return
      c.stop()
      capture = null
      micOn = false
      failed = err.message
      report.showError('voice', err)
      render()
    })
    render()
  }

  button.addEventListener('click', () => {
    micOn = !micOn
    setCapture(micOn || ptt)
    render()
  })
  const typing = (e: Event): boolean => {
    const t = e.target as HTMLElement | null
    return t != null && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)
  }
  window.addEventListener('keydown', e => {
    if (e.code !== PUSH_TO_TALK_CODE || e.repeat || micOn || typing(e) || e.ctrlKey || e.metaKey || e.altKey) return
    ptt = true
    setCapture(true)
    render()
  })
  const release = (): void => {
    if (!ptt) return
    ptt = false
    setCapture(micOn)
    render()
  }
  window.addEventListener('keyup', e => { if (e.code === PUSH_TO_TALK_CODE) release() })
  window.addEventListener('blur', release)

  function render (): void {
    const state = failed != null && !micOn ? 'unavailable' : micOn ? 'on' : ptt ? 'ptt' : 'off'
    button.dataset.state = state
    button.dataset.voice = socketState === 'open' ? (out.ctx.state === 'running' ? 'hearing' : 'suspended') : socketState
    button.setAttribute('aria-pressed', String(micOn))
    button.textContent = micOn ? 'Mic on' : ptt ? 'Talking…' : 'Mic off'
    const hearing = socketState === 'open'
      ? (out.ctx.state === 'running' ? 'you hear the people near you' : 'click anywhere to hear the people near you')
      : store.spaceId == null ? 'voice starts when you are in a space' : 'voice is connecting'
    button.title = `Microphone on/off; hold T to talk while it is off. ${hearing}.${failed != null ? ` ${failed}` : ''}`
  }

  // -- per-person volume and mute ----------------------------------------------------------------

  async function setMuted (did: string, muted: boolean): Promise<void> {
    if (muted) mutedHere.add(did)
    else mutedHere.delete(did)
    speakers.get(did)?.setMuted(muted)
    for (const b of document.querySelectorAll<HTMLButtonElement>(`button[data-voice-mute="${CSS.escape(did)}"]`)) paintMute(b, muted)
    const space = store.spaceId
    if (space == null) return
    try {
      await api.post('/api/v0/voice/mute', { space, did, muted })
    } catch (err) {
      report.showError('voice', err)
    }
  }

  function paintMute (b: HTMLButtonElement, muted: boolean): void {
    b.textContent = muted ? 'hear' : 'silence'
    b.setAttribute('aria-pressed', String(muted))
    b.title = muted ? 'You do not hear them: click to hear them again' : 'Stop hearing them (only you)'
  }

  function decorate (li: HTMLElement, did: string): void {
    if (shown.get(did) === true) li.classList.add('speaking')
    if (did === store.did) return
    const slider = h('input', { type: 'range', class: 'volume', min: '0', max: String(MAX_VOLUME), step: '0.05', value: String(volumes.get(did) ?? 1), 'data-voice-volume': did, title: 'Their volume (only for you)', 'aria-label': 'volume' })
    slider.addEventListener('input', () => {
      const v = Number(slider.value)
      volumes.set(did, v)
      speakers.get(did)?.setVolume(v)
    })
    const mute = h('button', { type: 'button', class: 'small voice-mute', 'data-voice-mute': did })
    paintMute(mute, mutedHere.has(did))
    mute.addEventListener('click', () => { void setMuted(did, !mutedHere.has(did)) })
    li.append(slider, mute)
  }

  store.on('space', ({ id, previous }) => {
    if (id === previous) return
    shown.clear()
    openSpace(id)
  })
  render()

  return {
    events: {
      'voice:speaking': msg => {
        if (msg.space !== store.spaceId || typeof msg.did !== 'string') return
        talking.set(msg.did, { talking: msg.talking === true, at: performance.now() })
      },
      'space:leave': msg => {
        if (msg.space !== store.spaceId || typeof msg.did !== 'string') return
        speakers.get(msg.did)?.close()
        speakers.delete(msg.did)
        talking.delete(msg.did)
        shown.delete(msg.did)
      }
    },
    decorate,
    hook: () => {
      const dids = new Set<string>([...store.people().map(p => p.did), ...speakers.keys()])
      dids.delete(store.did ?? '')
      return {
        on: socketState === 'open' && socket?.space === store.spaceId && out.ctx.state === 'running',
        muted: !sending(),
        peers: [...dids].map(did => {
          const s = speakers.get(did)
          const st = s?.stats
          return {
            did,
            level: s != null && !mutedHere.has(did) ? s.level() : 0,
            receiving: s?.receiving ?? false,
            delayMs: Math.round(st?.delayMs ?? 0),
            targetMs: Math.round(st?.targetMs ?? 0),
            jitterMs: Math.round(st?.jitterMs ?? 0),
            late: st?.late ?? 0,
            concealed: st?.concealed ?? 0,
            played: st?.played ?? 0,
            decoder: s?.decoderInfo ?? { state: 'none', decoding: 0, errors: 0 }
          }
        })
      }
    },
    spectrum: () => out.peaks()
  }
}
