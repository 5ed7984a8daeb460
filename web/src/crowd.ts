/**
 * Other members in the 3D view, drawn as a crowd that stays cheap as it grows:
 * - Bodies are instances: one InstancedMesh per part and level of detail, sharing one geometry and
 *   one material, coloured per instance from the member's did. The draw calls stay the same for 1
 *   member or 500; members outside the camera's view are skipped, and those past DETAIL_DISTANCE
 *   get a coarse body without a visor.
 * - Name tags are DOM, but at most MAX_TAGS are shown, nearest first, none past TAG_MAX_DISTANCE,
 *   and a tag that would overlap a nearer one is hidden (their sizes are measured once per name).
 *   A tag's style is written only when it changes.
 * - Avatars: the nearest MAX_DETAILED_AVATARS members in view within DETAIL_DISTANCE are drawn as
 *   their own model (their avatar CID, or a default avatar chosen from their did: avatars/), animated
 *   from how fast they are drawn moving; everyone else stays an instance. A member's capsule stands
 *   in while their model loads, and stays when it fails (the named reason in the tag's title; the
 *   member's place among the detailed goes to the next nearest). How many are detailed follows the
 *   measured frame time (governor.ts: fewer when frames are slow, between MIN_DETAILED_AVATARS and
 *   MAX_DETAILED_AVATARS).
 * - Impostors: every other member in view whose model is in is drawn as a picture of that model on
 *   a quad facing the camera, one draw call per model worn (impostors.ts); the capsule stands in
 *   until the model's picture is made, and for everyone when there is no renderer.
 * Nothing is allocated per frame beyond the interpolated samples.
 */
import {
  BoxGeometry, CapsuleGeometry, Color, Frustum, InstancedMesh, Matrix4, MeshLambertMaterial,
  type Object3D, type PerspectiveCamera, type WebGLRenderer, Quaternion, type Scene, Sphere, Vector3, DynamicDrawUsage, type BufferGeometry, type Material
} from 'three'
import { Track, type Quat, type Vec3 } from './interp.ts'
import type { AnimationState } from './avatars/animate.ts'
import { DetailGovernor } from './governor.ts'
import { Impostors } from './impostors.ts'

/** Name tags shown at once (the nearest members whose tags do not overlap). */
export const MAX_TAGS = 12
/** Members further than this (metres) show no name tag. */
export const TAG_MAX_DISTANCE = 60
/** Members further than this (metres) are drawn with the coarse body. */
export const DETAIL_DISTANCE = 25
/** Height of a name tag's anchor above the feet (metres). */
export const TAG_LIFT = 1.95
/** Instances allotted at first; doubled whenever the crowd outgrows them. */
export const INITIAL_CAPACITY = 32
/** Name tags measured in one frame (each once, when its text changes). */
export const MAX_MEASURED_PER_FRAME = 32
/** Pixels kept free between two shown tags. */
export const TAG_GAP_PX = 2
/** Members drawn as their own animated model at once (the nearest in view within DETAIL_DISTANCE). */
export const MAX_DETAILED_AVATARS = 12
/** A model no longer drawn in detail is kept this long (ms) before it is freed, in case it returns. */
export const DETAIL_KEEP_MS = 5000
/** Members within this distance (metres) have their model loaded for their impostor. */
export const IMPOSTOR_LOAD_DISTANCE = 60

/** A tag on screen: its anchor (bottom middle) and size, in pixels. */
interface Rect { sx: number, sy: number, tagW: number, tagH: number }

/** Whether two tags' rectangles come closer than TAG_GAP_PX. */
function overlap (a: Rect, b: Rect): boolean {
  return Math.abs(a.sx - b.sx) * 2 < a.tagW + b.tagW + 2 * TAG_GAP_PX &&
    a.sy - a.tagH < b.sy + TAG_GAP_PX && b.sy - b.tagH < a.sy + TAG_GAP_PX
}

/** A stable colour for a did (hue from a string hash). */
export function didColor (did: string): Color {
  let h = 2166136261
  for (let i = 0; i < did.length; i++) h = Math.imul(h ^ did.charCodeAt(i), 16777619)
  return new Color().setHSL(((h >>> 0) % 360) / 360, 0.65, 0.55)
}

function overlapsAny (a: Rect, placed: Rect[]): boolean {
  for (const b of placed) if (overlap(a, b)) return true
  return false
}

export type TagState = 'shown' | 'overlap' | 'limit' | 'out'

export interface CrowdMember { did: string, name: string, avatar?: string, position: Vec3, rotation: Quat, time: number, moving?: boolean }

/** A member's own model, placed at the member's pose and animated from its speed (avatars/model.ts). */
export interface AvatarBody {
  readonly root: Object3D
  /** Advances by dt seconds at speed (m/s); returns the gait shown. */
  update: (dt: number, speed: number) => 'idle' | 'walk'
  dispose: () => void
}

/** Where members' models come from, loaded once per model and shared (avatars/cache.ts's AvatarModels). */
export interface AvatarModelSource {
  /** The model a member wears: cache key and the name shown (the CID, or a default's name). */
  modelOf: (did: string, avatar: string | undefined) => { key: string, name: string }
  /** The model's state, its load started on first ask. */
  request: (key: string) => { readonly state: 'queued' | 'loading' | 'ready' | 'failed', readonly error?: string }
  /** The model's state if it was asked for, without starting a load. */
  peek: (key: string) => { readonly state: 'queued' | 'loading' | 'ready' | 'failed', readonly error?: string } | undefined
  /** A new body of a ready model (none when it cannot be made: the model is failed then). */
  instance: (key: string) => AvatarBody | undefined
  release: (key: string, body: AvatarBody) => void
  dispose: () => void
}

/** A member as the debug hook shows it. */
export interface AvatarView {
  did: string
  name: string
  position: Vec3
  tag: boolean
  tagState: TagState
  distance: number
  detail: 'near' | 'far' | 'hidden'
  /** The avatar worn: its CID, or the name of the default avatar. */
  model: string
  /** Drawn as its own model now (not the stand-in capsule nor an impostor). */
  loaded: boolean
  /** Drawn as a picture of its model (an impostor), not as the model nor the capsule. */
  impostor: boolean
  animation: AnimationState
  /** Why the model could not be shown (`Name: message`). */
  error?: string
}

interface Avatar {
  did: string
  name: string
  track: Track
  color: Color
  position: Vector3
  quaternion: Quaternion
  label: HTMLDivElement
  /** The tag's size in pixels (0 until measured, again after the text changes). */
  tagW: number
  tagH: number
  /** Placed on screen this frame; its label not display:none; kept in this frame's layout. */
  tagShown: boolean
  displayed: boolean
  keep: boolean
  /** Why the tag is shown or not: on screen, hidden under a nearer one, past MAX_TAGS, or out of range or view. */
  tagState: TagState
  tagX: number
  tagY: number
  /** Per frame: distance to the camera, and where the tag's anchor falls on screen. */
  dist: number
  sx: number
  sy: number
  /** The model worn (cache key, shown name), its body when drawn in detail, and its state. */
  model: { key: string, name: string }
  inst?: AvatarBody
  instKey?: string
  detailed: boolean
  detailedAt: number
  /** Drawn as its own model in the last frame; drawn as a picture of its model (an impostor). */
  shown: boolean
  impostor: boolean
  anim: 'idle' | 'walk'
  /** Horizontal speed as drawn (m/s, smoothed), from the last drawn position. */
  speed: number
  px: number
  pz: number
  error?: string
}

/** One part of the body at one level of detail: a shared geometry drawn as instances. */
class Part {
  mesh: InstancedMesh
  count = 0
  private readonly scene: Scene
  private readonly geometry: BufferGeometry
  private readonly material: Material
  private readonly coloured: boolean
  constructor (scene: Scene, geometry: BufferGeometry, material: Material, coloured: boolean, capacity: number) {
    this.scene = scene
    this.geometry = geometry
    this.material = material
    this.coloured = coloured
    this.mesh = this.make(capacity)
  }

  private make (capacity: number): InstancedMesh {
    const m = new InstancedMesh(this.geometry, this.material, capacity)
    m.instanceMatrix.setUsage(DynamicDrawUsage)
    if (this.coloured) { m.setColorAt(0, new Color()); m.instanceColor!.setUsage(DynamicDrawUsage) }
    // Instances move every frame: we cull them ourselves rather than trust a stale bounding sphere.
    m.frustumCulled = false
    m.count = 0
    this.scene.add(m)
    return m
  }

  grow (capacity: number): void {
    this.scene.remove(this.mesh)
    this.mesh.dispose()
    this.mesh = this.make(capacity)
  }

  add (matrix: Matrix4, color: Color): void {
    this.mesh.setMatrixAt(this.count, matrix)
    if (this.coloured) this.mesh.setColorAt(this.count, color)
    this.count++
  }

  flush (): void {
    this.mesh.count = this.count
    this.mesh.instanceMatrix.clearUpdateRanges()
    this.mesh.instanceMatrix.addUpdateRange(0, this.count * 16)
    this.mesh.instanceMatrix.needsUpdate = true
    if (this.coloured && this.mesh.instanceColor != null) {
      this.mesh.instanceColor.clearUpdateRanges()
      this.mesh.instanceColor.addUpdateRange(0, this.count * 3)
      this.mesh.instanceColor.needsUpdate = true
    }
    this.count = 0
  }

  dispose (): void {
    this.scene.remove(this.mesh)
    this.mesh.dispose()
  }
}

export class Crowd {
  private readonly avatars = new Map<string, Avatar>()
  private readonly parts: Part[]
  private readonly near: Part[]
  private readonly far: Part[]
  private capacity = INITIAL_CAPACITY
  private readonly frustum = new Frustum()
  private readonly projection = new Matrix4()
  private readonly sphere = new Sphere(new Vector3(), 1.2)
  private readonly matrix = new Matrix4()
  private readonly unit = new Vector3(1, 1, 1)
  private readonly v = new Vector3()
  private readonly candidates: Avatar[] = []
  private readonly placed: Avatar[] = []
  private readonly measure: Avatar[] = []
  private readonly detail: Avatar[] = []
  /**
   * Bodies (near and far count models and impostors too), models, impostors and tags drawn in the
   * last frame, and the governor's limit of detailed models (for the benchmark and tests).
   */
  readonly last = { near: 0, far: 0, tags: 0, models: 0, impostors: 0, detailLimit: MAX_DETAILED_AVATARS }
  private readonly governor = new DetailGovernor(MAX_DETAILED_AVATARS)
  private readonly impostors?: Impostors
  /** Members that would be detailed with no limit, in the last frame. */
  private wanted = 0

  private readonly labels: HTMLElement
  private readonly scene: Scene
  private readonly models?: AvatarModelSource
  private now = 0
  private dt = 0

  /** Without a source of models, every member stays an instance; without a renderer, no impostors. */
  constructor (scene: Scene, labels: HTMLElement, models?: AvatarModelSource, renderer?: WebGLRenderer) {
    this.labels = labels
    this.scene = scene
    this.models = models
    if (models != null && renderer != null) this.impostors = new Impostors(scene, renderer)
    const bodyNear = new CapsuleGeometry(0.3, 1.0, 4, 12).translate(0, 0.8, 0)
    const bodyFar = new CapsuleGeometry(0.3, 1.0, 1, 6).translate(0, 0.8, 0)
    const visor = new BoxGeometry(0.36, 0.12, 0.12).translate(0, 1.35, -0.26)
    const skin = new MeshLambertMaterial({ color: 0xffffff })
    const dark = new MeshLambertMaterial({ color: 0x1b1f24 })
    this.near = [new Part(scene, bodyNear, skin, true, this.capacity), new Part(scene, visor, dark, false, this.capacity)]
    this.far = [new Part(scene, bodyFar, skin, true, this.capacity)]
    this.parts = [...this.near, ...this.far]
  }

  get size (): number { return this.avatars.size }

  upsert (m: CrowdMember, arrival: number, tagText: string): void {
    let a = this.avatars.get(m.did)
    if (a == null) {
      const label = document.createElement('div')
      label.className = 'tag'
      label.dataset.did = m.did
      label.style.display = 'none'
      this.labels.append(label)
      a = { did: m.did, name: '', track: new Track(), color: didColor(m.did), position: new Vector3(), quaternion: new Quaternion(), label, tagW: 0, tagH: 0, tagShown: false, displayed: false, keep: false, tagState: 'out', tagX: NaN, tagY: NaN, dist: 0, sx: 0, sy: 0, model: this.modelOf(m.did, m.avatar), detailed: false, detailedAt: 0, shown: false, impostor: false, anim: 'idle', speed: 0, px: NaN, pz: NaN }
      this.avatars.set(m.did, a)
      if (this.avatars.size > this.capacity) {
        while (this.capacity < this.avatars.size) this.capacity *= 2
        for (const p of this.parts) p.grow(this.capacity)
      }
    }
    a.name = m.name
    if (m.avatar !== undefined) {
      const model = this.modelOf(m.did, m.avatar)
      if (model.key !== a.model.key) {
        this.dropModel(a)
        a.model = model
        a.error = undefined
        a.label.title = ''
      }
    }
    if (a.label.textContent !== tagText) { a.label.textContent = tagText; a.tagW = 0 }
    a.track.push(m.time, m.position, m.rotation, arrival, m.moving)
  }

  remove (did: string): void {
    const a = this.avatars.get(did)
    if (a == null) return
    this.avatars.delete(did)
    a.label.remove()
    this.dropModel(a)
  }

  private modelOf (did: string, avatar: string | undefined): { key: string, name: string } {
    return this.models?.modelOf(did, avatar) ?? { key: avatar ?? '', name: avatar ?? '' }
  }

  /** Frees a member's model body, if it has one. */
  private dropModel (a: Avatar): void {
    if (a.inst != null && a.instKey != null) this.models?.release(a.instKey, a.inst)
    a.inst = undefined
    a.instKey = undefined
  }

  setSpeaking (did: string, on: boolean): void {
    this.avatars.get(did)?.label.classList.toggle('speaking', on)
  }

  clear (): void {
    for (const did of [...this.avatars.keys()]) this.remove(did)
  }

  /** Moves every member to where it is drawn now (ms, our clock). */
  advance (now: number): void {
    const dt = this.now === 0 ? 0 : Math.min(0.25, Math.max(0, (now - this.now) / 1000))
    if (this.now !== 0) this.last.detailLimit = this.governor.frame(now - this.now, now, this.wanted)
    this.now = now
    this.dt = dt
    for (const a of this.avatars.values()) {
      const s = a.track.sample(now)
      if (s == null) continue
      a.position.set(s.p[0], s.p[1], s.p[2])
      a.quaternion.set(s.q[0], s.q[1], s.q[2], s.q[3])
      if (dt > 0 && Number.isFinite(a.px)) {
        const v = Math.hypot(s.p[0] - a.px, s.p[2] - a.pz) / dt
        a.speed += (v - a.speed) * Math.min(1, dt * 8)
      }
      a.px = s.p[0]
      a.pz = s.p[2]
    }
  }

  /** Fills the instances for this frame; the camera's matrices must be current. */
  draw (camera: PerspectiveCamera): void {
    this.projection.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse)
    this.frustum.setFromProjectionMatrix(this.projection)
    let near = 0
    let far = 0
    let models = 0
    let impostors = 0
    this.pickDetailed(camera)
    for (const a of this.avatars.values()) {
      a.impostor = false
      a.shown = this.showModel(a)
      if (a.shown) { near++; models++; continue }
      if (a.dist === Infinity) continue
      if (this.showImpostor(a, camera)) {
        a.impostor = true
        impostors++
        if (a.dist <= DETAIL_DISTANCE) near++
        else far++
        continue
      }
      this.matrix.compose(a.position, a.quaternion, this.unit)
      if (a.dist <= DETAIL_DISTANCE) {
        for (const p of this.near) p.add(this.matrix, a.color)
        near++
      } else {
        for (const p of this.far) p.add(this.matrix, a.color)
        far++
      }
    }
    for (const p of this.parts) p.flush()
    this.impostors?.flush()
    this.last.near = near
    this.last.far = far
    this.last.models = models
    this.last.impostors = impostors
  }

  /** Distances and culling for this frame; marks the nearest (the governor's limit) in view within DETAIL_DISTANCE. */
  private pickDetailed (camera: PerspectiveCamera): void {
    const d = this.detail
    d.length = 0
    for (const a of this.avatars.values()) {
      a.detailed = false
      a.dist = a.position.distanceTo(camera.position)
      this.sphere.center.set(a.position.x, a.position.y + 0.8, a.position.z)
      if (!this.frustum.intersectsSphere(this.sphere)) { a.dist = Infinity; continue }
      if (this.models == null || a.dist > DETAIL_DISTANCE) continue
      // A member whose model failed keeps the capsule and leaves its place to the next nearest.
      // (Asked again, so it is tried anew once its retry time has come.)
      const e = a.inst == null && this.models.peek(a.model.key)?.state === 'failed' ? this.models.request(a.model.key) : undefined
      if (e?.state === 'failed') {
        if (a.error !== e.error) { a.error = e.error; a.label.title = e.error ?? '' }
        continue
      }
      d.push(a)
    }
    const limit = this.governor.limit
    this.wanted = Math.min(d.length, MAX_DETAILED_AVATARS)
    if (d.length > limit) d.sort((x, y) => x.dist - y.dist)
    for (let i = 0; i < d.length && i < limit; i++) { d[i].detailed = true; d[i].detailedAt = this.now }
  }

  /** Draws a member as the picture of its model when the model is in (its load asked for when near enough). */
  private showImpostor (a: Avatar, camera: PerspectiveCamera): boolean {
    const models = this.models
    const imp = this.impostors
    if (models == null || imp == null) return false
    const key = a.model.key
    if (!imp.has(key)) {
      const e = a.dist <= IMPOSTOR_LOAD_DISTANCE ? models.request(key) : models.peek(key)
      if (e?.state !== 'ready') return false
      if (!imp.snapshot(key, () => models.instance(key), body => { models.release(key, body as AvatarBody) })) return false
    }
    imp.add(key, a.position, a.quaternion, camera.position)
    return true
  }

  /** Draws a member as its model when it is detailed and the model is in; false to draw the capsule. */
  private showModel (a: Avatar): boolean {
    const models = this.models
    if (models == null) return false
    if (!a.detailed) {
      if (a.inst != null) {
        a.inst.root.visible = false
        if (this.now - a.detailedAt > DETAIL_KEEP_MS) this.dropModel(a)
      }
      return false
    }
    if (a.inst == null) {
      const e = models.request(a.model.key)
      if (e.state === 'failed') {
        if (a.error !== e.error) { a.error = e.error; a.label.title = e.error ?? '' }
        return false
      }
      if (e.state !== 'ready') return false
      a.inst = models.instance(a.model.key)
      if (a.inst == null) return false
      if (a.error != null) { a.error = undefined; a.label.title = '' }
      a.instKey = a.model.key
      this.scene.add(a.inst.root)
    }
    const inst = a.inst
    inst.root.visible = true
    inst.root.position.copy(a.position)
    inst.root.quaternion.copy(a.quaternion)
    a.anim = inst.update(this.dt, a.speed)
    return true
  }

  /** Shows the nearest tags that fit (at most MAX_TAGS, none overlapping) over a w x h view. */
  placeTags (camera: PerspectiveCamera, w: number, h: number): void {
    const c = this.candidates
    c.length = 0
    for (const a of this.avatars.values()) {
      a.tagState = 'out'
      if (!(a.dist <= TAG_MAX_DISTANCE)) continue
      this.v.set(a.position.x, a.position.y + TAG_LIFT, a.position.z).project(camera)
      if (!(this.v.z < 1 && this.v.z > -1 && Math.abs(this.v.x) < 1.2 && Math.abs(this.v.y) < 1.2)) continue
      a.sx = (this.v.x + 1) / 2 * w
      a.sy = (1 - this.v.y) / 2 * h
      c.push(a)
    }
    c.sort((x, y) => x.dist - y.dist)
    // Tags not measured since their text changed are measured together, nearest first, at most
    // MAX_MEASURED_PER_FRAME a frame (one layout for the batch), shown off screen until placed.
    const measure = this.measure
    measure.length = 0
    for (const a of c) {
      if (measure.length >= MAX_MEASURED_PER_FRAME) break
      if (a.tagW !== 0) continue
      measure.push(a)
      if (!a.displayed) { a.label.style.display = ''; a.displayed = true; a.label.style.transform = 'translate(-10000px, 0)'; a.tagX = NaN }
    }
    for (const a of measure) { const r = a.label.getBoundingClientRect(); a.tagW = r.width; a.tagH = r.height }
    const placed = this.placed
    placed.length = 0
    for (const a of c) {
      if (placed.length >= MAX_TAGS || a.tagW === 0) a.tagState = 'limit'
      else if (overlapsAny(a, placed)) a.tagState = 'overlap'
      else { a.tagState = 'shown'; placed.push(a) }
    }
    for (const a of placed) {
      const x = Math.round(a.sx)
      const y = Math.round(a.sy)
      if (!a.displayed) { a.label.style.display = ''; a.displayed = true }
      if (x !== a.tagX || y !== a.tagY) {
        a.label.style.transform = `translate(-50%, -100%) translate(${x}px, ${y}px)`
        a.tagX = x
        a.tagY = y
      }
      const z = String(1000 - Math.round(a.dist))
      if (a.label.style.zIndex !== z) a.label.style.zIndex = z
      a.keep = true
    }
    for (const a of this.avatars.values()) {
      a.tagShown = a.keep
      a.keep = false
      if (!a.tagShown && a.displayed) { a.label.style.display = 'none'; a.displayed = false }
    }
    this.last.tags = placed.length
  }

  list (): AvatarView[] {
    return [...this.avatars.values()].map(a => ({
      did: a.did,
      name: a.name,
      position: [a.position.x, a.position.y, a.position.z] as Vec3,
      tag: a.tagShown,
      tagState: a.tagState,
      distance: a.dist,
      detail: a.dist === Infinity ? 'hidden' as const : a.dist <= DETAIL_DISTANCE ? 'near' as const : 'far' as const,
      model: a.model.name,
      loaded: a.shown,
      impostor: a.impostor,
      animation: a.shown ? a.anim : 'none' as const,
      ...(a.error != null ? { error: a.error } : {})
    }))
  }

  dispose (): void {
    this.clear()
    for (const p of this.parts) p.dispose()
    this.impostors?.dispose()
    this.models?.dispose()
  }
}
