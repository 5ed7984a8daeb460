/**
 * Avatar models by key, loaded once and shared: a member's model is their avatar CID, or a
 * default avatar of the project's chosen from their did when they have none. At most
 * MAX_AVATAR_LOADS load at once (the rest wait in order of asking); a model nobody wears stays
 * cached until more than MAX_CACHED_AVATAR_MODELS are held, then the least recently used goes.
 * A model that fails keeps its named error, and is tried again only when asked for after
 * AVATAR_RETRY_MS (the swarm may have it by then; a bad file costs one load a minute at most).
 */
import { defaultAvatarUrl } from './defaults.ts'
import { DEFAULT_PREFIX, modelOf } from './key.ts'
import { AVATAR_PLUGINS, errorText, loadBundled, type AvatarFile, type BundledModelLoader, type SwarmModelLoader } from './load.ts'
import { AvatarInstance, AvatarTemplate } from './model.ts'

export { modelOf }

/** Avatar models loading at once. */
export const MAX_AVATAR_LOADS = 3
/** Loaded avatar models kept when nobody wears them. */
export const MAX_CACHED_AVATAR_MODELS = 16
/** A failed model is loaded again when asked for this long (ms) after it failed. */
export const AVATAR_RETRY_MS = 60_000

export interface ModelEntry {
  readonly key: string
  state: 'queued' | 'loading' | 'ready' | 'failed'
  template?: AvatarTemplate
  /** `Name: message` of the failure. */
  error?: string
  /** Instances in use. */
  refs: number
  /** When last asked for (a counter), for eviction. */
  used: number
  /** When it failed (ms, performance.now()). */
  failedAt?: number
}

export class AvatarModels {
  private readonly entries = new Map<string, ModelEntry>()
  private readonly queue: ModelEntry[] = []
  private readonly swarm: SwarmModelLoader
  private readonly bundled: BundledModelLoader
  private readonly abort = new AbortController()
  private active = 0
  private clock = 0
  /** Called when a model is in or failed (the crowd shows it next frame). */
  onChange?: () => void

  /** Without `bundled`, default avatars are read and parsed here, with no checks (they are ours). */
  constructor (swarm: SwarmModelLoader, bundled?: BundledModelLoader) {
    this.swarm = swarm
    this.bundled = bundled ?? (async (url, options) => await loadBundled(url, options.signal))
  }

  /** The model a member wears (their avatar CID, or a default chosen from their did). */
  modelOf (did: string, avatar: string | undefined): { key: string, name: string } {
    return modelOf(did, avatar)
  }

  /** The entry of a model, its load queued on first ask. */
  request (key: string): ModelEntry {
    let e = this.entries.get(key)
    if (e == null) {
      e = { key, state: 'queued', refs: 0, used: 0 }
      this.entries.set(key, e)
      this.queue.push(e)
      this.pump()
    }
    else if (e.state === 'failed' && e.template == null && performance.now() - (e.failedAt ?? 0) > AVATAR_RETRY_MS) {
      e.state = 'queued'
      this.queue.push(e)
      this.pump()
    }
    e.used = ++this.clock
    return e
  }

  /** The entry of a model asked for before, if any (starts nothing). */
  peek (key: string): ModelEntry | undefined {
    return this.entries.get(key)
  }

  /** A new body of a ready model (release it with `release`). */
  instance (key: string): AvatarInstance | undefined {
    const e = this.entries.get(key)
    if (e?.template == null) return undefined
    try {
      const inst = new AvatarInstance(e.template)
      e.refs++
      return inst
    } catch (err) {
      // A model three.js parsed but that cannot be cloned or rigged: failed like a bad file.
      e.state = 'failed'
      e.error = errorText(err)
      e.failedAt = performance.now()
      if (e.refs === 0) { e.template.dispose(); e.template = undefined }
      return undefined
    }
  }

  release (key: string, inst: { dispose: () => void }): void {
    inst.dispose()
    const e = this.entries.get(key)
    if (e != null) e.refs = Math.max(0, e.refs - 1)
    this.evict()
  }

  /** Models held: loading, ready and failed (for tests). */
  get size (): number { return this.entries.size }

  dispose (): void {
    this.abort.abort()
    for (const e of this.entries.values()) e.template?.dispose()
    this.entries.clear()
    this.queue.length = 0
  }

  private pump (): void {
    while (this.active < MAX_AVATAR_LOADS && this.queue.length > 0) {
      const e = this.queue.shift() as ModelEntry
      this.active++
      e.state = 'loading'
      void this.load(e).finally(() => { this.active--; this.pump() })
    }
  }

  private async load (e: ModelEntry): Promise<void> {
    try {
      const file = await this.read(e.key)
      if (this.entries.get(e.key) !== e) { new AvatarTemplate(file).dispose(); return }
      e.template = new AvatarTemplate(file)
      e.state = 'ready'
      e.error = undefined
    } catch (err) {
      e.state = 'failed'
      e.error = errorText(err)
      e.failedAt = performance.now()
    }
    this.evict()
    this.onChange?.()
  }

  private async read (key: string): Promise<AvatarFile> {
    const signal = this.abort.signal
    if (!key.startsWith(DEFAULT_PREFIX)) return await this.swarm(key, { plugins: AVATAR_PLUGINS, signal })
    const name = key.slice(DEFAULT_PREFIX.length)
    const url = defaultAvatarUrl(name)
    if (url == null) throw new Error(`no default avatar named ${name}`)
    return await this.bundled(url, { plugins: AVATAR_PLUGINS, signal })
  }

  /** Drops the least recently used models nobody wears while more than the cache holds are ready. */
  private evict (): void {
    const idle = [...this.entries.values()].filter(e => e.state === 'ready' && e.refs === 0)
    let ready = [...this.entries.values()].filter(e => e.state === 'ready').length
    idle.sort((a, b) => a.used - b.used)
    for (const e of idle) {
      if (ready <= MAX_CACHED_AVATAR_MODELS) break
      e.template?.dispose()
      this.entries.delete(e.key)
      ready--
    }
  }
}
