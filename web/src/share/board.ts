/**
 * One member's board in the view: a flat panel at the place its sharer chose, turned to face us,
 * showing their stream. Chunks are put back together into VP8 frames, decoded with WebCodecs'
 * VideoDecoder (from a keyframe on: after a frame lost, it waits for the next one) and drawn on
 * a canvas that is the panel's three.js CanvasTexture.
 */
import { CanvasTexture, DoubleSide, Mesh, MeshBasicMaterial, PlaneGeometry, SRGBColorSpace, type Scene } from 'three'
import { FrameAssembler, type Assembled } from './frames.ts'
import { KEYFRAME_REQUEST_MIN_MS, type Chunk, type Vec3 } from './wire.ts'

/** The panel's size in metres (16:9). */
export const BOARD_WIDTH_M = 3.2
export const BOARD_HEIGHT_M = 1.8
/** The panel's canvas (its texture), whatever the stream's size. */
export const CANVAS_WIDTH = 640
export const CANVAS_HEIGHT = 360

export class Board {
  readonly did: string
  position: Vec3
  readonly canvas = document.createElement('canvas')
  /** Frames decoded and drawn so far; decoder errors; frames given up. */
  frames = 0
  errors = 0
  /** Frames given up while being put together. */
  get lost (): number { return this.assembler.lost }
  private readonly ctx: CanvasRenderingContext2D | null
  private readonly texture: CanvasTexture
  private readonly mesh: Mesh
  private readonly scene: Scene
  private decoder?: VideoDecoder
  private readonly assembler = new FrameAssembler()
  private needKey = true

  /** Called (at most every KEYFRAME_REQUEST_MIN_MS) when frames are dropped for want of a keyframe. */
  onNeedKey?: () => void
  private keyAskedAt = -Infinity

  constructor (did: string, position: Vec3, scene: Scene) {
    this.did = did
    this.position = position
    this.scene = scene
    // A fixed size: the texture's storage is made once; frames are scaled into it.
    this.canvas.width = CANVAS_WIDTH
    this.canvas.height = CANVAS_HEIGHT
    this.ctx = this.canvas.getContext('2d')
    if (this.ctx != null) { this.ctx.fillStyle = '#222'; this.ctx.fillRect(0, 0, CANVAS_WIDTH, CANVAS_HEIGHT) }
    this.texture = new CanvasTexture(this.canvas)
    this.texture.colorSpace = SRGBColorSpace
    this.mesh = new Mesh(new PlaneGeometry(BOARD_WIDTH_M, BOARD_HEIGHT_M), new MeshBasicMaterial({ map: this.texture, side: DoubleSide }))
    this.mesh.name = `board:${did}`
    this.place(position)
    scene.add(this.mesh)
  }

  /** The size of the last frame drawn (0 before the first). */
  width = 0
  height = 0

  place (p: Vec3): void {
    this.position = p
    this.mesh.position.set(p[0], p[1], p[2])
  }

  /** Turns the panel to face a viewer at `at` (about the vertical axis). */
  face (at: readonly number[]): void {
    this.mesh.lookAt(at[0], this.position[1], at[2])
  }

  /** One chunk of the stream; a frame complete is decoded (from a keyframe on, after a gap). */
  take (c: Chunk): void {
    const f = this.assembler.take(c)
    if (f == null) return
    if (f.gap && !f.key) this.needKey = true
    if (this.needKey && !f.key) { this.askKey(); return }
    this.decode(f)
  }

  private decode (f: Assembled): void {
    const dec = this.ensureDecoder()
    if (dec == null) return
    try {
      dec.decode(new EncodedVideoChunk({ type: f.key ? 'key' : 'delta', timestamp: f.ts * 1000, data: f.data }))
      this.needKey = false
    } catch {
      this.errors++
      this.needKey = true
    }
  }

  private askKey (): void {
    const now = performance.now()
    if (now - this.keyAskedAt < KEYFRAME_REQUEST_MIN_MS) return
    this.keyAskedAt = now
    this.onNeedKey?.()
  }

  private ensureDecoder (): VideoDecoder | undefined {
    if (this.decoder != null && this.decoder.state !== 'closed') return this.decoder
    if (typeof VideoDecoder === 'undefined') return undefined
    this.decoder = new VideoDecoder({
      output: frame => { this.draw(frame) },
      error: () => { this.errors++; this.needKey = true }
    })
    this.decoder.configure({ codec: 'vp8', optimizeForLatency: true })
    this.needKey = true
    return this.decoder
  }

  private draw (frame: VideoFrame): void {
    try {
      this.width = frame.displayWidth
      this.height = frame.displayHeight
      this.ctx?.drawImage(frame, 0, 0, CANVAS_WIDTH, CANVAS_HEIGHT)
      this.texture.needsUpdate = true
      this.frames++
    } finally {
      frame.close()
    }
  }

  close (): void {
    this.scene.remove(this.mesh)
    this.mesh.geometry.dispose()
    ;(this.mesh.material as MeshBasicMaterial).dispose()
    this.texture.dispose()
    if (this.decoder != null && this.decoder.state !== 'closed') this.decoder.close()
  }
}
