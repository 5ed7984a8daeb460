/**
 * The 3D view: ground with the space's grid and land parcels, the world's objects (glTF/GLB from
 * the swarm, through our peer's /content/CID, with a placeholder and progress while they stream
 * and a red marker when they fail), other members (crowd.ts: instanced bodies coloured from their
 * did, name tags that do not pile up), and our own first-person camera. Models load through
 * models/ (limits, meshopt, KTX2, early stages); labels are plain DOM positioned each frame.
 */
import {
  AmbientLight, Box3, BoxGeometry, BoxHelper, BufferGeometry, Color, DirectionalLight,
  EdgesGeometry, Float32BufferAttribute, Fog, Group, HemisphereLight, LineBasicMaterial, LineSegments,
  Mesh, MeshBasicMaterial, MeshLambertMaterial, type Object3D, PerspectiveCamera,
  PlaneGeometry, Quaternion, Raycaster, Scene, SRGBColorSpace, Vector2, Vector3, WebGLRenderer
} from 'three'
import { Crowd, didColor, type AvatarModelSource } from './crowd.ts'
import { describeError, disposeObject, ModelLoader, type ModelStage } from './models/index.ts'
import type { Quat, Vec3 } from './interp.ts'

export { didColor }
export { MAX_MODEL_BYTES } from './models/index.ts'

export interface Grid { width: number, depth: number, cell: number }
export interface Parcel { id: string, owner: string, space: string, x: number, y: number, w: number, h: number }
export interface WorldObject { id: string, model: string, position: Vec3, rotation: Quat, scale: Vec3, props: Record<string, unknown> }
export interface Member { did: string, name: string, avatar: string, position: Vec3, rotation: Quat, time: number, moving?: boolean }

/** Eye height of the first-person camera, in metres. */
export const EYE_HEIGHT = 1.6
/** Models fetched at once. */
export const MAX_CONCURRENT_LOADS = 4

export type ObjectStage = 'loading' | 'bounds' | 'geometry' | 'full' | 'failed'

interface Obj {
  value: WorldObject
  group: Group
  model?: Object3D
  placeholder?: Object3D
  loaded: boolean
  failed: boolean
  error?: string
  progress: number
  /** How much of the model is shown: its bounds, its untextured geometry, all of it, or none (failed). */
  stage: ObjectStage
  label: HTMLDivElement
  /** Bumped when the model changes, so a late load of an old model is dropped. */
  gen: number
  /** Stops the download of a model no longer wanted. */
  abort?: AbortController
}

export class View {
  readonly canvas: HTMLCanvasElement
  /** Null when the browser gives no WebGL: the scene is still kept (and the panel works), not drawn. */
  readonly renderer: WebGLRenderer | null
  readonly webglError?: string
  readonly scene = new Scene()
  readonly camera = new PerspectiveCamera(70, 1, 0.1, 2000)
  /** Our own pose: feet position, yaw and pitch (radians). */
  readonly me = { position: [0, 0, 0] as Vec3, yaw: 0, pitch: 0 }
  grid: Grid = { width: 256, depth: 256, cell: 32 }
  frames = 0
  onFirstFrame?: () => void
  onLoadingChange?: (loading: number, failed: number) => void

  private readonly labels: HTMLElement
  private readonly token: string
  private readonly world = new Group()
  private readonly ground = new Group()
  private readonly parcelsGroup = new Group()
  private readonly crowd: Crowd
  private readonly objects = new Map<string, Obj>()
  /** The page's one model pipeline (avatars use it too). */
  readonly models: ModelLoader
  private readonly queue: Array<() => Promise<void>> = []
  private active = 0
  private selection?: BoxHelper
  private selectedId?: string
  private readonly raycaster = new Raycaster()
  private readonly tmpV = new Vector3()
  private running = false

  /** `avatars` gives the source of members' models (drawn as capsules without one). */
  constructor (canvas: HTMLCanvasElement, labels: HTMLElement, token: string, avatars?: (models: ModelLoader) => AvatarModelSource) {
    this.canvas = canvas
    this.labels = labels
    this.token = token
    let renderer: WebGLRenderer | null = null
    try {
      renderer = new WebGLRenderer({ canvas, antialias: true, powerPreference: 'high-performance' })
      renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2))
      renderer.outputColorSpace = SRGBColorSpace
    } catch (err) {
      this.webglError = (err as Error).message
    }
    this.renderer = renderer
    this.scene.background = new Color(0xbfd8ee)
    this.scene.fog = new Fog(0xbfd8ee, 60, 400)
    this.scene.add(new HemisphereLight(0xeef6ff, 0x5a6a4a, 1.6))
    this.scene.add(new AmbientLight(0xffffff, 0.25))
    const sun = new DirectionalLight(0xffffff, 1.8)
    sun.position.set(50, 120, 30)
    this.scene.add(sun)
    this.scene.add(this.ground, this.parcelsGroup, this.world)
    this.camera.rotation.order = 'YXZ'
    this.models = new ModelLoader({ token, renderer })
    this.setGrid(this.grid)
    this.crowd = new Crowd(this.scene, labels, avatars?.(this.models), renderer ?? undefined)
  }

  start (): void {
    if (this.running) return
    this.running = true
    let last = performance.now()
    const frame = (now: number): void => {
      if (!this.running) return
      requestAnimationFrame(frame)
      const dt = Math.min(0.1, (now - last) / 1000)
      last = now
      this.onTick?.(dt)
      this.render()
    }
    requestAnimationFrame(frame)
  }

  /** Called each frame before drawing, with seconds since the last frame. */
  onTick?: (dt: number) => void

  resize (width: number, height: number): void {
    if (width === 0 || height === 0) return
    this.renderer?.setSize(width, height, false)
    this.camera.aspect = width / height
    this.camera.updateProjectionMatrix()
  }

  // -- ground, grid, parcels ---------------------------------------------------------------------

  setGrid (grid: Grid): void {
    this.grid = grid
    for (const c of [...this.ground.children]) { this.ground.remove(c); dispose(c) }
    const { width: w, depth: d } = grid
    // Pushed back in depth so the grid lines drawn on it never flicker through.
    const plane = new Mesh(new PlaneGeometry(w, d), new MeshLambertMaterial({ color: 0x8fae7a, polygonOffset: true, polygonOffsetFactor: 2, polygonOffsetUnits: 2 }))
    plane.rotation.x = -Math.PI / 2
    plane.position.set(w / 2, 0, d / 2)
    plane.name = 'ground'
    this.ground.add(plane)
    // Metre lines (thinned on very large spaces) and stronger lines at each interest cell.
    const step = Math.max(1, Math.ceil(Math.max(w, d) / 512))
    const minor: number[] = []
    const major: number[] = []
    const cell = grid.cell > 0 ? grid.cell : 32
    // Each line in pieces of at most 16 m: a segment that passes under the camera is clipped badly
    // by some software rasterisers (it vanished in SwiftShader).
    const piece = 16
    for (let x = 0; x <= w + 1e-9; x += step) {
      const to = x % cell === 0 || x === w ? major : minor
      for (let z = 0; z < d; z += piece) to.push(x, 0.005, z, x, 0.005, Math.min(d, z + piece))
    }
    for (let z = 0; z <= d + 1e-9; z += step) {
      const to = z % cell === 0 || z === d ? major : minor
      for (let x = 0; x < w; x += piece) to.push(x, 0.005, z, Math.min(w, x + piece), 0.005, z)
    }
    this.ground.add(lines(minor, 0x6f8d5c, 0.35), lines(major, 0x3f5a33, 0.9))
    this.scene.fog = new Fog(0xbfd8ee, Math.max(60, Math.min(w, d) / 3), Math.max(400, Math.max(w, d) * 1.5))
  }

  setParcels (parcels: Parcel[], me: string): void {
    for (const c of [...this.parcelsGroup.children]) { this.parcelsGroup.remove(c); dispose(c) }
    for (const p of parcels) {
      const color = p.owner === me ? new Color(0xffd54a) : didColor(p.owner)
      const m = new Mesh(new PlaneGeometry(p.w, p.h), new MeshBasicMaterial({ color, transparent: true, opacity: 0.28, depthWrite: false }))
      m.rotation.x = -Math.PI / 2
      m.position.set(p.x + p.w / 2, 0.01, p.y + p.h / 2)
      m.userData.parcel = p.id
      const edge = lines([p.x, 0.02, p.y, p.x + p.w, 0.02, p.y, p.x + p.w, 0.02, p.y, p.x + p.w, 0.02, p.y + p.h,
        p.x + p.w, 0.02, p.y + p.h, p.x, 0.02, p.y + p.h, p.x, 0.02, p.y + p.h, p.x, 0.02, p.y], color.getHex(), 1)
      this.parcelsGroup.add(m, edge)
    }
  }

  // -- other members -----------------------------------------------------------------------------

  /** A presence update of a member (not us). */
  upsertMember (m: Member, arrival = performance.timeOrigin + performance.now()): void {
    this.crowd.upsert(m, arrival, m.name !== '' ? m.name : shortDid(m.did))
  }

  removeMember (did: string): void {
    this.crowd.remove(did)
  }

  /** Marks a member's name tag while they speak. */
  setSpeaking (did: string, on: boolean): void {
    this.crowd.setSpeaking(did, on)
  }

  clearMembers (): void {
    this.crowd.clear()
  }

  // -- objects -----------------------------------------------------------------------------------

  /** Makes the scene hold exactly these objects (adding, moving, reloading and removing). */
  setObjects (list: WorldObject[]): void {
    const seen = new Set<string>()
    for (const o of list) {
      seen.add(o.id)
      const have = this.objects.get(o.id)
      if (have == null) {
        this.addObject(o)
      } else if (have.value.model !== o.model) {
        have.value = o
        this.applyTransform(have)
        this.loadModel(have)
      } else {
        have.value = o
        this.applyTransform(have)
      }
    }
    for (const id of [...this.objects.keys()]) if (!seen.has(id)) this.removeObject(id)
    if (this.selectedId != null && !this.objects.has(this.selectedId)) this.select(undefined)
    this.updateSelection()
  }

  private addObject (o: WorldObject): void {
    const group = new Group()
    group.userData.objectId = o.id
    const label = document.createElement('div')
    label.className = 'obj-tag'
    label.dataset.objectId = o.id
    this.labels.append(label)
    const obj: Obj = { value: o, group, loaded: false, failed: false, progress: 0, stage: 'loading', label, gen: 0 }
    this.objects.set(o.id, obj)
    this.world.add(group)
    this.applyTransform(obj)
    this.loadModel(obj)
  }

  private removeObject (id: string): void {
    const o = this.objects.get(id)
    if (o == null) return
    this.objects.delete(id)
    o.gen++
    o.abort?.abort()
    this.world.remove(o.group)
    disposeObject(o.group)
    o.label.remove()
    this.reportLoading()
  }

  private applyTransform (o: Obj): void {
    const v = o.value
    o.group.position.set(v.position[0], v.position[1], v.position[2])
    o.group.quaternion.set(v.rotation[0], v.rotation[1], v.rotation[2], v.rotation[3])
    o.group.scale.set(v.scale[0], v.scale[1], v.scale[2])
  }

  /** A box where the model will be: unit-sized, or the model's bounds once its JSON is in. */
  private setPlaceholder (o: Obj, kind: 'loading' | 'failed', bounds?: Box3): void {
    if (o.placeholder != null) { o.group.remove(o.placeholder); disposeObject(o.placeholder) }
    const color = kind === 'failed' ? 0xe53935 : 0x90a4ae
    const box = new BoxGeometry(1, 1, 1)
    const ph = new Group()
    const solid = new Mesh(box, new MeshBasicMaterial({ color, transparent: true, opacity: kind === 'failed' ? 0.45 : 0.25, depthWrite: false }))
    const edges = new LineSegments(new EdgesGeometry(box), new LineBasicMaterial({ color }))
    ph.add(solid, edges)
    if (kind === 'failed') {
      // A red cross over the box: visible from afar, unlike the label.
      ph.add(lines([-0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5, 0.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, 0.5, -0.5, -0.5, -0.5, 0.5], 0xb71c1c, 1))
    }
    ph.position.y = 0.5
    if (bounds != null && !bounds.isEmpty()) {
      const size = bounds.getSize(new Vector3()).max(new Vector3(0.01, 0.01, 0.01))
      bounds.getCenter(ph.position)
      ph.scale.copy(size)
    }
    ph.userData.placeholder = kind
    o.placeholder = ph
    o.group.add(ph)
  }

  private loadModel (o: Obj): void {
    const gen = ++o.gen
    o.abort?.abort()
    const abort = new AbortController()
    o.abort = abort
    if (o.model != null) { o.group.remove(o.model); disposeObject(o.model); o.model = undefined }
    o.loaded = false
    o.failed = false
    o.error = undefined
    o.progress = 0
    o.stage = 'loading'
    this.setPlaceholder(o, 'loading')
    this.setObjectLabel(o)
    this.reportLoading()
    const cid = o.value.model
    this.enqueue(async () => {
      if (gen !== o.gen) return
      const onStage = (s: ModelStage): void => {
        if (gen !== o.gen || o.loaded) { if (s.stage === 'geometry') disposeObject(s.scene); return }
        if (s.stage === 'bounds') {
          o.stage = 'bounds'
          this.setPlaceholder(o, 'loading', s.box)
        } else {
          this.showModel(o, s.scene)
          o.stage = 'geometry'
        }
        this.setObjectLabel(o)
        this.updateSelection()
      }
      try {
        const m = await this.models.load(cid, {
          signal: abort.signal,
          onProgress: p => {
            if (gen !== o.gen) return
            o.progress = p
            this.setObjectLabel(o)
          },
          onStage
        })
        if (gen !== o.gen) { m.dispose(); return }
        this.showModel(o, m.scene)
        o.loaded = true
        o.stage = 'full'
      } catch (err) {
        if (gen !== o.gen) return
        if (o.model != null) { o.group.remove(o.model); disposeObject(o.model); o.model = undefined }
        o.failed = true
        o.stage = 'failed'
        o.error = describeError(err)
        this.setPlaceholder(o, 'failed')
      }
      this.setObjectLabel(o)
      this.reportLoading()
      this.updateSelection()
    })
  }

  /** Puts a model (early or full) in an object's place, removing what was there. */
  private showModel (o: Obj, model: Object3D): void {
    if (o.model != null) { o.group.remove(o.model); disposeObject(o.model) }
    model.userData.objectId = o.value.id
    o.model = model
    o.group.add(model)
    if (o.placeholder != null) { o.group.remove(o.placeholder); disposeObject(o.placeholder); o.placeholder = undefined }
  }

  /** Tries a failed object's model again. */
  retry (id: string): void {
    const o = this.objects.get(id)
    if (o?.failed === true) this.loadModel(o)
  }

  private setObjectLabel (o: Obj): void {
    const el = o.label
    el.classList.toggle('failed', o.failed)
    el.classList.toggle('loading', !o.loaded && !o.failed)
    el.hidden = o.loaded
    el.dataset.stage = o.stage
    el.textContent = o.failed ? `failed to load: ${o.error ?? ''}`.slice(0, 160) : o.loaded ? '' : o.progress > 0 ? `loading ${Math.round(o.progress * 100)}%` : 'loading…'
    el.title = o.value.model
  }

  private reportLoading (): void {
    let loading = 0
    let failed = 0
    for (const o of this.objects.values()) {
      if (o.failed) failed++
      else if (!o.loaded) loading++
    }
    this.onLoadingChange?.(loading, failed)
  }

  private enqueue (job: () => Promise<void>): void {
    this.queue.push(job)
    this.pump()
  }

  private pump (): void {
    while (this.active < MAX_CONCURRENT_LOADS && this.queue.length > 0) {
      const job = this.queue.shift() as () => Promise<void>
      this.active++
      void job().finally(() => { this.active--; this.pump() })
    }
  }

  // -- selection ---------------------------------------------------------------------------------

  /** The object under a point of the canvas (normalised device coordinates), if any. */
  pick (ndcX: number, ndcY: number): string | undefined {
    this.raycaster.setFromCamera(new Vector2(ndcX, ndcY), this.camera)
    const hits = this.raycaster.intersectObject(this.world, true)
    for (const h of hits) {
      let o: Object3D | null = h.object
      while (o != null && o.userData.objectId == null) o = o.parent
      if (o != null) return o.userData.objectId as string
    }
    return undefined
  }

  select (id: string | undefined): void {
    this.selectedId = id
    this.updateSelection()
  }

  get selected (): string | undefined { return this.selectedId }

  private updateSelection (): void {
    if (this.selection != null) { this.scene.remove(this.selection); this.selection.dispose(); this.selection = undefined }
    const o = this.selectedId == null ? undefined : this.objects.get(this.selectedId)
    if (o == null) return
    this.selection = new BoxHelper(o.group, 0xffeb3b)
    this.scene.add(this.selection)
  }

  /** A spot on the ground `dist` metres in front of us, inside the grid. */
  spotAhead (dist = 3): Vec3 {
    const x = this.me.position[0] - Math.sin(this.me.yaw) * dist
    const z = this.me.position[2] - Math.cos(this.me.yaw) * dist
    return [clamp(x, 0, this.grid.width), 0, clamp(z, 0, this.grid.depth)]
  }

  // -- drawing -----------------------------------------------------------------------------------

  private render (): void {
    this.crowd.advance(performance.timeOrigin + performance.now())
    const m = this.me
    this.camera.position.set(m.position[0], m.position[1] + EYE_HEIGHT, m.position[2])
    this.camera.rotation.set(m.pitch, m.yaw, 0)
    this.camera.updateMatrixWorld()
    this.crowd.draw(this.camera)
    this.selection?.update()
    if (this.renderer != null) this.renderer.render(this.scene, this.camera)
    else this.scene.updateMatrixWorld()
    this.placeLabels()
    this.frames++
    if (this.frames === 1) this.onFirstFrame?.()
  }

  private placeLabels (): void {
    const w = this.canvas.clientWidth
    const h = this.canvas.clientHeight
    const place = (el: HTMLElement, obj: Object3D, lift: number): void => {
      this.tmpV.setFromMatrixPosition(obj.matrixWorld)
      this.tmpV.y += lift
      const dist = this.tmpV.distanceTo(this.camera.position)
      this.tmpV.project(this.camera)
      const visible = this.tmpV.z < 1 && this.tmpV.z > -1 && Math.abs(this.tmpV.x) < 1.2 && Math.abs(this.tmpV.y) < 1.2 && dist < 150
      el.style.display = visible ? '' : 'none'
      if (!visible) return
      el.style.transform = `translate(-50%, -100%) translate(${((this.tmpV.x + 1) / 2 * w).toFixed(1)}px, ${((1 - this.tmpV.y) / 2 * h).toFixed(1)}px)`
      el.style.zIndex = String(1000 - Math.round(dist))
    }
    this.crowd.placeTags(this.camera, w, h)
    for (const o of this.objects.values()) if (!o.label.hidden) place(o.label, o.group, 1.2)
  }

  // -- read-only views for the debug hook ---------------------------------------------------------

  /** Each member: where drawn, whether its name tag is shown, and its level of detail. */
  avatarList (): ReturnType<Crowd['list']> {
    return this.crowd.list()
  }

  /** Bodies drawn near and far (models and impostors among them), tags shown, the limit of detailed models, and the renderer's draw calls, in the last frame. */
  crowdStats (): { members: number, near: number, far: number, tags: number, models: number, impostors: number, detailLimit: number, calls: number, triangles: number } {
    const info = this.renderer?.info.render
    return { members: this.crowd.size, ...this.crowd.last, calls: info?.calls ?? 0, triangles: info?.triangles ?? 0 }
  }

  objectList (): Array<{ id: string, model: string, loaded: boolean, failed: boolean, error?: string, position: Vec3, progress: number, stage: ObjectStage }> {
    return [...this.objects.values()].map(o => ({ id: o.value.id, model: o.value.model, loaded: o.loaded, failed: o.failed, error: o.error, position: [...o.value.position], progress: o.progress, stage: o.stage }))
  }

  /** The size of a loaded object's model (for tests), or undefined. */
  objectSize (id: string): Vec3 | undefined {
    const o = this.objects.get(id)
    if (o?.model == null) return undefined
    const s = new Box3().setFromObject(o.model).getSize(new Vector3())
    return [s.x, s.y, s.z]
  }

  /** Our rotation as a quaternion (yaw only: avatars stay upright). */
  myRotation (): Quat {
    const q = new Quaternion().setFromAxisAngle(new Vector3(0, 1, 0), this.me.yaw)
    return [q.x, q.y, q.z, q.w]
  }
}

function lines (xyz: number[], color: number, opacity: number): LineSegments {
  const g = new BufferGeometry()
  g.setAttribute('position', new Float32BufferAttribute(xyz, 3))
  return new LineSegments(g, new LineBasicMaterial({ color, transparent: opacity < 1, opacity }))
}

function dispose (root: Object3D): void {
  root.traverse(o => {
    const m = o as Mesh
    m.geometry?.dispose()
    const mat = m.material
    if (Array.isArray(mat)) for (const x of mat) x.dispose()
    else mat?.dispose()
  })
}

export function clamp (v: number, lo: number, hi: number): number {
  return Math.min(Math.max(v, lo), hi)
}

export function shortDid (did: string): string {
  return did.length > 20 ? `${did.slice(0, 12)}…${did.slice(-6)}` : did
}
