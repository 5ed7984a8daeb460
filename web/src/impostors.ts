/**
 * Impostors: members beyond the few drawn as their own animated model are drawn as a picture of
 * their avatar on a quad that turns to face the camera. The picture of a model is rendered once,
 * when its model is first ready (a body of the model, standing at rest, seen from the front and
 * from the back, side by side in one IMPOSTOR_TEXTURE_PX-square texture), and everyone wearing that
 * model is one instance of that model's quad, showing the front or the back as the member faces
 * the camera or not: one draw call per model worn, however many wear it. A quad is two triangles where
 * a model is thousands: under software WebGL the triangles are what a crowd costs.
 */
import {
  AmbientLight, Box3, Color, DirectionalLight, DynamicDrawUsage, HemisphereLight, InstancedBufferAttribute, InstancedMesh, Matrix4,
  MeshBasicMaterial, OrthographicCamera, PlaneGeometry, Quaternion, Scene, Vector3, WebGLRenderTarget,
  type BufferGeometry, type Object3D, type WebGLRenderer
} from 'three'

/** Height of an impostor's picture in pixels (front and back, each half as wide, side by side). */
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
  /** Per instance: 0 shows the front, 1 the back. */
  sides: Float32Array
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
  private readonly sun = new DirectionalLight(0xffffff, 1.8)
  private readonly matrix = new Matrix4()
  private readonly q = new Quaternion()
  private readonly up = new Vector3(0, 1, 0)
  private readonly p = new Vector3()
  private readonly s = new Vector3()
  private readonly ahead = new Vector3()
  private clock = 0
  private snapshots = 0
  /** Quads drawn in the last frame. */
  drawn = 0

  constructor (scene: Scene, renderer: WebGLRenderer) {
    this.scene = scene
    this.renderer = renderer
    this.stage.add(new HemisphereLight(0xeef6ff, 0x5a6a4a, 1.6), new AmbientLight(0xffffff, 0.25))
    this.stage.add(this.sun)
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
      c.near = 0.01; c.far = 20 + size.z
      c.updateProjectionMatrix()
      const px = IMPOSTOR_TEXTURE_PX
      const target = new WebGLRenderTarget(px, px)
      target.scissorTest = true
      const r = this.renderer
      const before = r.getRenderTarget()
      const clear = r.getClearColor(new Color())
      const alpha = r.getClearAlpha()
      r.setClearColor(0x000000, 0)
      // Members face -z: the front is seen from -z (left half), the back from +z (right half).
      for (const [side, z] of [[0, box.min.z - 10], [1, box.max.z + 10]]) {
        target.viewport.set(side * px / 2, 0, px / 2, px)
        target.scissor.set(side * px / 2, 0, px / 2, px)
        r.setRenderTarget(target)
        r.clear()
        // Lit alike from either side: the sun is above and behind the camera.
        this.sun.position.set(20, 60, side === 0 ? -40 : 40)
        c.position.set(centre.x, centre.y, z)
        c.lookAt(centre.x, centre.y, centre.z)
        c.updateMatrixWorld()
        r.render(this.stage, c)
      }
      r.setRenderTarget(before)
      r.setClearColor(clear, alpha)
      this.stage.remove(root)
      const material = new MeshBasicMaterial({ map: target.texture, alphaTest: 0.5 })
      // Each instance shows one half of the picture: the front or the back.
      material.onBeforeCompile = shader => {
        shader.vertexShader = shader.vertexShader
          .replace('#include <common>', '#include <common>\nattribute float impostorSide;')
          .replace('#include <uv_vertex>', '#include <uv_vertex>\n#ifdef USE_MAP\nvMapUv.x = vMapUv.x * 0.5 + impostorSide * 0.5;\n#endif')
      }
      material.customProgramCacheKey = () => 'impostor'
      const sides = new Float32Array(8)
      const sheet: Sheet = { target, material, sides, mesh: this.mesh(material, sides), width: half, height: half * 2, bottom: centre.y - half, count: 0, capacity: 8, used: ++this.clock }
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

  private mesh (material: MeshBasicMaterial, sides: Float32Array): InstancedMesh {
    const geometry: BufferGeometry = this.geometry.clone()
    const side = new InstancedBufferAttribute(sides, 1)
    side.setUsage(DynamicDrawUsage)
    geometry.setAttribute('impostorSide', side)
    const m = new InstancedMesh(geometry, material, sides.length)
    m.instanceMatrix.setUsage(DynamicDrawUsage)
    m.frustumCulled = false
    m.count = 0
    this.scene.add(m)
    return m
  }

  /** Adds a member wearing `key` at `position`, facing `facing`, its quad turned to the camera at `eye`. */
  add (key: string, position: Vector3, facing: Quaternion, eye: Vector3): void {
    const sh = this.sheets.get(key)
    if (sh == null) return
    if (sh.count >= sh.capacity) {
      const old = sh.mesh
      sh.capacity *= 2
      const sides = new Float32Array(sh.capacity)
      sides.set(sh.sides)
      sh.sides = sides
      sh.mesh = this.mesh(sh.material, sides)
      for (let i = 0; i < sh.count; i++) { old.getMatrixAt(i, this.matrix); sh.mesh.setMatrixAt(i, this.matrix) }
      this.scene.remove(old)
      old.geometry.dispose()
      old.dispose()
    }
    // The member faces -z turned by `facing`: the front shows when that points towards the camera.
    this.ahead.set(0, 0, -1).applyQuaternion(facing)
    sh.sides[sh.count] = this.ahead.x * (eye.x - position.x) + this.ahead.z * (eye.z - position.z) >= 0 ? 0 : 1
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
        const side = sh.mesh.geometry.getAttribute('impostorSide') as InstancedBufferAttribute
        side.clearUpdateRanges()
        side.addUpdateRange(0, sh.count)
        side.needsUpdate = true
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
    sh.mesh.geometry.dispose()
    sh.mesh.dispose()
    sh.material.dispose()
    sh.target.dispose()
  }

  dispose (): void {
    for (const key of [...this.sheets.keys()]) this.drop(key)
    this.geometry.dispose()
  }
}
