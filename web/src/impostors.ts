/**
 * Impostors: members beyond the few drawn as their own animated model are drawn as a picture of
 * their avatar on a quad that turns to face the camera. The picture of a model is rendered once,
 * when its model is first ready (a body of the model, standing at rest, seen from the front, into
 * an IMPOSTOR_TEXTURE_PX-high texture), and everyone wearing that model is one instance of that
 * model's quad: one draw call per model worn, however many wear it. A quad is two triangles where
 * a model is thousands: under software WebGL the triangles are what a crowd costs.
 */
import {
  AmbientLight, Box3, Color, DirectionalLight, DynamicDrawUsage, HemisphereLight, InstancedMesh, Matrix4,
  MeshBasicMaterial, OrthographicCamera, PlaneGeometry, Quaternion, Scene, Vector3, WebGLRenderTarget,
  type Object3D, type WebGLRenderer
} from 'three'

/** Height of an impostor's picture in pixels (the width is half of it). */
export const IMPOSTOR_TEXTURE_PX = 128
/** Models whose picture is kept at once; past it the least recently drawn is freed. */
export const MAX_IMPOSTOR_MODELS = 32
/** Pictures rendered in one frame (each costs a small render). */
export const MAX_SNAPSHOTS_PER_FRAME = 2

/** A body of a model, as the crowd's model source makes them. */
export interface SnapshotBody { readonly root: Object3D, update: (dt: number, speed: number) => unknown }

interface Sheet {
  target: WebGLRenderTarget
  mesh: InstancedMesh
  material: MeshBasicMaterial
  /** Quad size (metres) and the picture's lift below the feet. */
  width: number
  height: number
  bottom: number
  count: number
  capacity: number
  used: number
}

export class Impostors {
  private readonly sheets = new Map<string, Sheet>()
  private readonly failed = new Set<string>()
  private readonly scene: Scene
  private readonly renderer: WebGLRenderer
  private readonly geometry = new PlaneGeometry(1, 1).translate(0, 0.5, 0)
  private readonly stage = new Scene()
  private readonly camera = new OrthographicCamera(-1, 1, 1, -1, 0.01, 100)
  private readonly matrix = new Matrix4()
  private readonly q = new Quaternion()
  private readonly up = new Vector3(0, 1, 0)
  private readonly p = new Vector3()
  private readonly s = new Vector3()
  private clock = 0
  private snapshots = 0
  /** Quads drawn in the last frame. */
  drawn = 0

  constructor (scene: Scene, renderer: WebGLRenderer) {
    this.scene = scene
    this.renderer = renderer
    this.stage.add(new HemisphereLight(0xeef6ff, 0x5a6a4a, 1.6), new AmbientLight(0xffffff, 0.25))
    const sun = new DirectionalLight(0xffffff, 1.8)
    sun.position.set(20, 60, -40)
    this.stage.add(sun)
  }

  /** Whether a model has its picture (false before it is made, or when it could not be). */
  has (key: string): boolean { return this.sheets.has(key) }

  /** Makes a model's picture from a body of it (at most MAX_SNAPSHOTS_PER_FRAME a frame); false when not now. */
  snapshot (key: string, make: () => SnapshotBody | undefined, release: (body: SnapshotBody) => void): boolean {
    if (this.sheets.has(key)) return true
    if (this.failed.has(key) || this.snapshots >= MAX_SNAPSHOTS_PER_FRAME) return false
    this.snapshots++
    const body = make()
    if (body == null) { this.failed.add(key); return false }
    try {
      body.update(0, 0)
      const root = body.root
      root.position.set(0, 0, 0)
      root.quaternion.identity()
      root.visible = true
      this.stage.add(root)
      root.updateMatrixWorld(true)
      const box = new Box3().setFromObject(root, true)
      if (box.isEmpty()) { this.failed.add(key); return false }
      const size = box.getSize(new Vector3())
      const centre = box.getCenter(new Vector3())
      // The picture is twice as high as wide: the quad is sized to the body's larger extent.
      const half = Math.max(size.y / 2, Math.max(size.x, size.z)) * 1.04
      const c = this.camera
      c.left = -half / 2; c.right = half / 2; c.top = half; c.bottom = -half
      c.position.set(centre.x, centre.y, box.min.z - 10)
      c.lookAt(centre.x, centre.y, centre.z)
      c.near = 0.01; c.far = 20 + size.z
      c.updateProjectionMatrix()
      c.updateMatrixWorld()
      const target = new WebGLRenderTarget(IMPOSTOR_TEXTURE_PX / 2, IMPOSTOR_TEXTURE_PX)
      const r = this.renderer
      const before = r.getRenderTarget()
      const clear = r.getClearColor(new Color())
      const alpha = r.getClearAlpha()
      r.setRenderTarget(target)
      r.setClearColor(0x000000, 0)
      r.clear()
      r.render(this.stage, c)
      r.setRenderTarget(before)
      r.setClearColor(clear, alpha)
      this.stage.remove(root)
      const material = new MeshBasicMaterial({ map: target.texture, alphaTest: 0.5 })
      const sheet: Sheet = { target, material, mesh: this.mesh(material, 8), width: half, height: half * 2, bottom: centre.y - half, count: 0, capacity: 8, used: ++this.clock }
      this.sheets.set(key, sheet)
      this.evict()
      return true
    } catch {
      this.failed.add(key)
      return false
    } finally {
      body.root.removeFromParent()
      release(body)
    }
  }

  private mesh (material: MeshBasicMaterial, capacity: number): InstancedMesh {
    const m = new InstancedMesh(this.geometry, material, capacity)
    m.instanceMatrix.setUsage(DynamicDrawUsage)
    m.frustumCulled = false
    m.count = 0
    this.scene.add(m)
    return m
  }

  /** Adds a member wearing `key` at `position`, turned to face the camera at `eye`. */
  add (key: string, position: Vector3, eye: Vector3): void {
    const sh = this.sheets.get(key)
    if (sh == null) return
    if (sh.count >= sh.capacity) {
      const old = sh.mesh
      sh.capacity *= 2
      sh.mesh = this.mesh(sh.material, sh.capacity)
      for (let i = 0; i < sh.count; i++) { old.getMatrixAt(i, this.matrix); sh.mesh.setMatrixAt(i, this.matrix) }
      this.scene.remove(old)
      old.dispose()
    }
    this.q.setFromAxisAngle(this.up, Math.atan2(eye.x - position.x, eye.z - position.z))
    this.p.set(position.x, position.y + sh.bottom, position.z)
    this.s.set(sh.width, sh.height, 1)
    this.matrix.compose(this.p, this.q, this.s)
    sh.mesh.setMatrixAt(sh.count++, this.matrix)
    sh.used = this.clock
  }

  /** Ends a frame: the quads added are drawn, the rest of last frame's are not. */
  flush (): void {
    this.clock++
    this.snapshots = 0
    let drawn = 0
    for (const sh of this.sheets.values()) {
      sh.mesh.count = sh.count
      if (sh.count > 0) {
        sh.mesh.instanceMatrix.clearUpdateRanges()
        sh.mesh.instanceMatrix.addUpdateRange(0, sh.count * 16)
        sh.mesh.instanceMatrix.needsUpdate = true
      }
      drawn += sh.count
      sh.count = 0
    }
    this.drawn = drawn
  }

  /** Pictures held (for tests). */
  get size (): number { return this.sheets.size }

  private evict (): void {
    if (this.sheets.size <= MAX_IMPOSTOR_MODELS) return
    const old = [...this.sheets.entries()].sort((a, b) => a[1].used - b[1].used)
    for (const [key] of old.slice(0, this.sheets.size - MAX_IMPOSTOR_MODELS)) this.drop(key)
  }

  private drop (key: string): void {
    const sh = this.sheets.get(key)
    if (sh == null) return
    this.sheets.delete(key)
    this.scene.remove(sh.mesh)
    sh.mesh.dispose()
    sh.material.dispose()
    sh.target.dispose()
  }

  dispose (): void {
    for (const key of [...this.sheets.keys()]) this.drop(key)
    this.geometry.dispose()
  }
}
