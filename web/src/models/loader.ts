/**
 * The client's one way to load a model (world objects and avatars alike): stream the bytes of a
 * content CID from our peer (a file, or a directory holding a .glb/.gltf), check them against the
 * limits in limits.ts before three.js parses anything, show early stages of a large GLB (its
 * bounds once the JSON chunk is in, its untextured geometry once every non-image byte is in), and
 * parse with meshopt and KTX2 support under a deadline. Errors are the named classes of limits.ts.
 */
import { Box3, type BufferGeometry, type Group, LoadingManager, type Material, type Mesh, type Object3D, type Texture, Vector3, type WebGLRenderer } from 'three'
import { type GLTF, GLTFLoader, type GLTFLoaderPlugin, type GLTFParser } from 'three/addons/loaders/GLTFLoader.js'
import { KTX2Loader } from 'three/addons/loaders/KTX2Loader.js'
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js'
import {
  checkGltf, checkImage, dataUriBytes, detectFormat, type GlbLayout, geometryCut, glbImageBytes, type GltfJson,
  type ModelFormat, modelBounds, parseJson, readGlbPrefix, stripToGeometry
} from './gltf.ts'
import {
  MalformedModelError, MAX_MODEL_BYTES, MAX_MODEL_JSON_BYTES, ModelError, ModelFetchError, ModelJsonTooLargeError, ModelLoadTimeoutError,
  ModelTooLargeError, MODEL_LOAD_TIMEOUT_MS
} from './limits.ts'

/**
 * The Basis transcoder's worker as a file of the client (vite.config.ts writes it), served with a
 * CSP of its own: the transcoder evaluates strings, which the page's CSP does not allow.
 */
export const KTX2_WORKER_URL = '/basis/ktx2-worker.js'
/** Bytes of an external image we read to learn its size. */
const IMAGE_HEAD_BYTES = 64 * 1024

export type ModelStage = { stage: 'bounds', box: Box3 } | { stage: 'geometry', scene: Object3D }

export interface LoadOptions {
  signal?: AbortSignal
  /** Bytes received, 0..1 (when the peer says the length). */
  onProgress?: (p: number) => void
  /** Early stages of a large model; a 'geometry' scene is the caller's to dispose. */
  onStage?: (s: ModelStage) => void
  /** GLTFLoader plugins for this load (a VRM loader, say). */
  plugins?: Array<(parser: GLTFParser) => GLTFLoaderPlugin>
}

export interface LoadedModel {
  gltf: GLTF
  scene: Group
  /** Frees its geometry, materials and textures. */
  dispose: () => void
}

export interface ModelLoaderInit {
  /** The page's API token, sent to our peer. */
  token: string
  /** Needed for KTX2 textures (which formats the GPU takes); without it they fail. */
  renderer?: WebGLRenderer | null
  timeoutMs?: number
}

export class ModelLoader {
  private readonly token: string
  private readonly renderer: WebGLRenderer | null
  private readonly timeoutMs: number
  private readonly manager = new LoadingManager()
  private ktx2?: KTX2Loader

  constructor (init: ModelLoaderInit) {
    this.token = init.token
    this.renderer = init.renderer ?? null
    this.timeoutMs = init.timeoutMs ?? MODEL_LOAD_TIMEOUT_MS
    // Textures a .gltf names by relative URL load through <img> in some browsers (no headers):
    // they carry the token in the query, as media elements do.
    this.manager.setURLModifier(url => {
      if (!url.startsWith('/content/') && !url.startsWith(location.origin + '/content/')) return url
      return url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(this.token)
    })
  }

  /** The model of a content CID, checked, with its stages along the way. */
  async load (cid: string, opts: LoadOptions = {}): Promise<LoadedModel> {
    const base = `/content/${encodeURIComponent(cid)}`
    let res = await this.get(base, opts.signal)
    let resourcePath = '/content/'
    if ((res.headers.get('content-type') ?? '').startsWith('application/json')) {
      // A directory CID answers with its listing; a .gltf file may also be JSON.
      const text = new TextDecoder().decode(await readAll(res, MAX_MODEL_JSON_BYTES, opts))
      let listing: { cid?: unknown, entries?: Array<{ name: string }> } | undefined
      try { listing = JSON.parse(text) as typeof listing } catch {}
      if (!Array.isArray(listing?.entries) || typeof listing?.cid !== 'string') {
        return await this.finish(new TextEncoder().encode(text), 'gltf', undefined, resourcePath, opts)
      }
      const entries = listing.entries
      const entry = entries.find(e => /\.glb$/i.test(e.name)) ?? entries.find(e => /\.gltf$/i.test(e.name))
      if (entry == null) throw new ModelFetchError('directory holds no .glb or .gltf')
      resourcePath = base + '/'
      res = await this.get(resourcePath + encodeURIComponent(entry.name), opts.signal)
    }
    return await this.stream(res, resourcePath, opts)
  }

  /**
   * A model file of the client itself (a default avatar, by the URL the bundle gives it): the
   * same streaming, checks and stages; relative URIs resolve beside it.
   */
  async loadUrl (url: string, opts: LoadOptions = {}): Promise<LoadedModel> {
    const u = new URL(url, location.origin)
    if (u.origin !== location.origin) throw new ModelFetchError('models load from this page\'s peer only')
    const res = await this.get(u.href, opts.signal)
    return await this.stream(res, u.pathname.replace(/[^/]*$/, ''), opts)
  }

  /**
   * A model already in memory (a default avatar shipped with the client, say): the same checks
   * and parse; relative URIs of a .gltf resolve against `resourcePath`.
   */
  async loadBytes (bytes: Uint8Array, resourcePath = '/', opts: LoadOptions = {}): Promise<LoadedModel> {
    if (bytes.length > MAX_MODEL_BYTES) throw new ModelTooLargeError(`model is ${bytes.length} bytes, over ${MAX_MODEL_BYTES}`)
    return await this.finish(bytes, detectFormat(bytes, true) as ModelFormat, undefined, resourcePath, opts)
  }

  private async get (url: string, signal?: AbortSignal): Promise<Response> {
    const res = await fetch(url, { headers: { authorization: `Bearer ${this.token}` }, signal })
    if (!res.ok) {
      let msg = `HTTP ${res.status}`
      try { const j = await res.json() as { message?: string }; if (j.message != null) msg = j.message } catch {}
      throw new ModelFetchError(msg)
    }
    const total = Number(res.headers.get('content-length') ?? 0)
    if (total > MAX_MODEL_BYTES) { void res.body?.cancel(); throw new ModelTooLargeError(`model is ${total} bytes, over ${MAX_MODEL_BYTES}`) }
    return res
  }

  /** Reads a model file as it arrives, acting on each prefix (format, JSON checks, stages). */
  private async stream (res: Response, resourcePath: string, opts: LoadOptions): Promise<LoadedModel> {
    let format: ModelFormat | undefined
    let layout: GlbLayout | undefined
    let cut: number | undefined
    let full = false
    const bytes = await readAll(res, MAX_MODEL_BYTES, opts, (view, complete) => {
      format ??= detectFormat(view, complete)
      if (format === 'gltf' && view.length > MAX_MODEL_JSON_BYTES) throw new ModelJsonTooLargeError(`glTF JSON is over ${MAX_MODEL_JSON_BYTES} bytes`)
      if (format !== 'glb') return
      if (layout == null) {
        layout = readGlbPrefix(view, complete)
        if (layout == null) return
        checkGltf(layout.json, layout.binLength)
        const b = modelBounds(layout.json)
        if (b != null) opts.onStage?.({ stage: 'bounds', box: new Box3(new Vector3(...b.min), new Vector3(...b.max)) })
        cut = geometryCut(layout.json, layout)
      }
      if (complete && view.length < layout.length) throw new MalformedModelError(`GLB is ${view.length} bytes, its header says ${layout.length}`)
      if (cut != null && view.length >= cut && !complete && opts.onStage != null) {
        const glb = stripToGeometry(layout.json, layout, view, cut)
        cut = undefined
        // Parsed beside the download; dropped if the full model is there first.
        void this.parse(glb.buffer as ArrayBuffer, resourcePath, opts).then(m => {
          if (full) m.dispose()
          else opts.onStage?.({ stage: 'geometry', scene: m.scene })
        }, () => {})
      }
    })
    try {
      return await this.finish(bytes, format ?? detectFormat(bytes, true) as ModelFormat, layout, resourcePath, opts)
    } finally {
      full = true
    }
  }

  /** The checks that need every byte (image sizes), then the parse. */
  private async finish (bytes: Uint8Array, format: ModelFormat, layout: GlbLayout | undefined, resourcePath: string, opts: LoadOptions): Promise<LoadedModel> {
    let json: GltfJson
    if (format === 'glb') {
      if (layout == null) {
        layout = readGlbPrefix(bytes, true) as GlbLayout
        checkGltf(layout.json, layout.binLength)
      }
      json = layout.json
    } else {
      json = parseJson(bytes)
      checkGltf(json)
      const b = modelBounds(json)
      if (b != null) opts.onStage?.({ stage: 'bounds', box: new Box3(new Vector3(...b.min), new Vector3(...b.max)) })
    }
    const images = (json.images ?? []) as Array<{ uri?: string }>
    for (let i = 0; i < images.length; i++) {
      const im = images[i]
      let head: Uint8Array | undefined
      if (layout != null) head = glbImageBytes(json, layout, bytes, i)
      if (head == null && typeof im.uri === 'string') {
        head = im.uri.startsWith('data:') ? dataUriBytes(im.uri, IMAGE_HEAD_BYTES) : await this.head(new URL(im.uri, location.origin + resourcePath).href, opts.signal)
      }
      if (head != null) checkImage(head, `images[${i}]`)
    }
    opts.signal?.throwIfAborted()
    return await this.parse(bytes.buffer.byteLength === bytes.length ? bytes.buffer as ArrayBuffer : bytes.slice().buffer, resourcePath, opts)
  }

  /** The first bytes of a file beside the model (an image a .gltf names). */
  private async head (url: string, signal?: AbortSignal): Promise<Uint8Array> {
    const res = await this.get(url, signal)
    return await readAll(res, Infinity, { signal }, undefined, IMAGE_HEAD_BYTES)
  }

  private async parse (buffer: ArrayBuffer, resourcePath: string, opts: LoadOptions): Promise<LoadedModel> {
    const loader = new GLTFLoader(this.manager)
    loader.setRequestHeader({ authorization: `Bearer ${this.token}` })
    loader.setMeshoptDecoder(MeshoptDecoder)
    const ktx2 = this.ktx2Loader()
    if (ktx2 != null) loader.setKTX2Loader(ktx2)
    for (const p of opts.plugins ?? []) loader.register(p)
    const gltf = await withTimeout(loader.parseAsync(buffer, resourcePath), this.timeoutMs, late => { disposeObject(late.scene) })
    // Models without normals would draw black under lights.
    gltf.scene.traverse(n => {
      const g = (n as Mesh).geometry
      if (g?.attributes?.position != null && g.attributes.normal == null) g.computeVertexNormals()
    })
    return { gltf, scene: gltf.scene, dispose: () => { disposeObject(gltf.scene) } }
  }

  private ktx2Loader (): KTX2Loader | undefined {
    if (this.ktx2 == null && this.renderer != null) {
      // No transcoder path: KTX2Loader names its transcoder by `new URL(..., import.meta.url)`, which
      // vite ships as hashed assets beside the bundle.
      this.ktx2 = new WorkerFileKTX2Loader(this.manager).detectSupport(this.renderer)
    }
    return this.ktx2
  }

  /** Ends the transcoder's workers. */
  dispose (): void {
    this.ktx2?.dispose()
    this.ktx2 = undefined
  }
}

/** KTX2Loader whose workers start from KTX2_WORKER_URL rather than a blob: URL of the same code. */
class WorkerFileKTX2Loader extends KTX2Loader {
  override init (): Promise<void> {
    const self = this as unknown as { transcoderPending?: Promise<void>, workerSourceURL: string }
    const first = self.transcoderPending == null
    const pending = super.init() as Promise<void>
    if (first) {
      // Workers are made on first use, from workerSourceURL as it is then.
      self.transcoderPending = pending.then(() => {
        if (self.workerSourceURL.startsWith('blob:')) URL.revokeObjectURL(self.workerSourceURL)
        self.workerSourceURL = new URL(KTX2_WORKER_URL, location.origin).href
      })
    }
    return self.transcoderPending as Promise<void>
  }
}

/**
 * A response's bytes as they arrive (at most `max`, else ModelTooLargeError), calling `onData`
 * with each prefix; stops early once `enough` bytes are in.
 */
async function readAll (res: Response, max: number, opts: LoadOptions, onData?: (view: Uint8Array, complete: boolean) => void, enough = Infinity): Promise<Uint8Array> {
  const total = Number(res.headers.get('content-length') ?? 0)
  if (total > max) { void res.body?.cancel(); throw new ModelTooLargeError(`model is ${total} bytes, over ${max}`) }
  let buf = new Uint8Array(total > 0 ? Math.min(total, enough) : 64 * 1024)
  let got = 0
  const reader = res.body?.getReader()
  if (reader == null) {
    const all = new Uint8Array(await res.arrayBuffer())
    if (all.length > max) throw new ModelTooLargeError(`model is ${all.length} bytes, over ${max}`)
    onData?.(all, true)
    return all
  }
  try {
    for (;;) {
      opts.signal?.throwIfAborted()
      const { done, value } = await reader.read()
      if (done) break
      if (got + value.length > max) throw new ModelTooLargeError(`model is over ${max} bytes`)
      if (got + value.length > buf.length) {
        const next = new Uint8Array(Math.min(Math.max(buf.length * 2, got + value.length), Number.isFinite(max) ? max : Infinity))
        next.set(buf.subarray(0, got))
        buf = next
      }
      buf.set(value, got)
      got += value.length
      if (total > 0) opts.onProgress?.(Math.min(1, got / total))
      if (got >= enough) { void reader.cancel(); return buf.subarray(0, got) }
      onData?.(buf.subarray(0, got), false)
    }
  } catch (err) {
    void reader.cancel().catch(() => {})
    throw err
  }
  opts.onProgress?.(1)
  const out = got === buf.length ? buf : buf.slice(0, got)
  onData?.(out, true)
  return out
}

/** The promise's value, or ModelLoadTimeoutError after `ms`; a late value goes to `onLate`. */
export async function withTimeout<T> (p: Promise<T>, ms: number, onLate: (v: T) => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  let timedOut = false
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { timedOut = true; reject(new ModelLoadTimeoutError(`model did not load within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([p, deadline])
  } finally {
    clearTimeout(timer)
    if (timedOut) p.then(v => { onLate(v) }, () => {})
  }
}

/** Frees an object tree's geometry, materials and their textures. */
export function disposeObject (root: Object3D): void {
  root.traverse(o => {
    const m = o as Mesh
    ;(m.geometry as BufferGeometry | undefined)?.dispose()
    const mats = (Array.isArray(m.material) ? m.material : m.material != null ? [m.material] : []) as Material[]
    for (const mat of mats) {
      for (const v of Object.values(mat)) if ((v as Texture | null)?.isTexture === true) (v as Texture).dispose()
      mat.dispose()
    }
  })
}

/** A message to show for a failed load: the error's class name and what it says. */
export function describeError (err: unknown): string {
  if (err instanceof ModelError) return `${err.name}: ${err.message}`
  const e = err as Error
  return e?.name != null && e.name !== 'Error' ? `${e.name}: ${e.message}` : String(e?.message ?? err)
}
