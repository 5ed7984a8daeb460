/**
 * A small mesh builder for the project's default avatars: lofts (rings of points joined into a
 * tube, closed by fans), each ring with one colour and one set of bone weights, so a limb bends
 * smoothly where its rings blend two bones. Winding is fixed per loft (faces point away from the
 * loft's middle), normals are smoothed over vertices that share a position. Pure arithmetic, no
 * randomness: the same calls give the same numbers.
 */

export type Vec3 = [number, number, number]
/** A colour as linear RGB in [0, 1]. */
export type Rgb = [number, number, number]
/** Bone influences of a ring: [joint index, weight] pairs (at most four, summing to one). */
export type Weights = ReadonlyArray<readonly [number, number]>

/** A label on some vertices (a part of the face) with a point they move about. */
export interface Tag {
  part: string
  centre: Vec3
}

/** One ring of a loft: its points in order around, its colour and its bone weights. */
export interface Ring {
  points: Vec3[]
  colour: Rgb
  weights: Weights
  /** Weights per point, in place of `weights` (where one ring spans two bones side by side). */
  pointWeights?: Weights[]
}

export interface LoftOptions {
  /** Close the first ring with a fan to this point (or to the ring's centre when true). */
  capStart?: Vec3 | boolean
  /** Close the last ring with a fan to this point (or to the ring's centre when true). */
  capEnd?: Vec3 | boolean
  /** The point faces turn away from; the mean of the rings' centres when left out. */
  inside?: Vec3
}

export const add = (a: Vec3, b: Vec3): Vec3 => [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
export const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
export const scale = (a: Vec3, s: number): Vec3 => [a[0] * s, a[1] * s, a[2] * s]
export const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
export const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
export const lerp = (a: Vec3, b: Vec3, t: number): Vec3 => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
export function normalize (a: Vec3): Vec3 {
  const l = Math.hypot(a[0], a[1], a[2])
  return l === 0 ? [0, 0, 0] : [a[0] / l, a[1] / l, a[2] / l]
}

/** Hermite smoothstep of t clamped to [0, 1]. */
export function smooth (t: number): number {
  const x = Math.min(1, Math.max(0, t))
  return x * x * (3 - 2 * x)
}

/**
 * `n` points on an ellipse around `centre` in the plane across `axis`: half-width `a` along `ref`
 * (made square to the axis) and `b` along axis × ref.
 */
export function ellipse (centre: Vec3, axis: Vec3, ref: Vec3, a: number, b: number, n: number): Vec3[] {
  const d = normalize(axis)
  const u = normalize(sub(ref, scale(d, dot(ref, d))))
  const v = cross(d, u)
  const out: Vec3[] = []
  for (let j = 0; j < n; j++) {
    const t = (2 * Math.PI * j) / n
    out.push(add(centre, add(scale(u, a * Math.cos(t)), scale(v, b * Math.sin(t)))))
  }
  return out
}

/** The mean of some points. */
export function centroid (points: readonly Vec3[]): Vec3 {
  let c: Vec3 = [0, 0, 0]
  for (const p of points) c = add(c, p)
  return scale(c, 1 / points.length)
}

/** Accumulates vertices and triangles; `build` gives flat typed arrays for a glTF primitive. */
export class MeshBuilder {
  private readonly pos: number[] = []
  private readonly col: number[] = []
  private readonly jnt: number[] = []
  private readonly wgt: number[] = []
  private readonly idx: number[] = []
  private readonly tags: Array<Tag | null> = []
  /** Tag given to the vertices added from now on (for morph targets), or null. */
  tag: Tag | null = null

  /** Number of triangles so far. */
  get triangles (): number { return this.idx.length / 3 }

  private vertex (p: Vec3, colour: Rgb, weights: Weights): number {
    const sorted = [...weights].filter(w => w[1] > 0).sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, 4)
    const total = sorted.reduce((s, w) => s + w[1], 0)
    if (sorted.length === 0 || total <= 0) throw new Error('a vertex needs a bone weight')
    const i = this.pos.length / 3
    this.tags.push(this.tag)
    this.pos.push(p[0], p[1], p[2])
    this.col.push(colour[0], colour[1], colour[2])
    // Unused slots hold joint 0 with weight zero, as glTF asks.
    for (let k = 0; k < 4; k++) {
      this.jnt.push(k < sorted.length ? sorted[k][0] : 0)
      this.wgt.push(k < sorted.length ? sorted[k][1] / total : 0)
    }
    return i
  }

  /** Joins `rings` (each with the same number of points) into a tube, with optional end fans. */
  loft (rings: readonly Ring[], opts: LoftOptions = {}): void {
    const n = rings[0].points.length
    if (rings.some(r => r.points.length !== n)) throw new Error('rings of a loft differ in size')
    const tris: Array<[number, number, number]> = []
    const ids = rings.map(r => r.points.map((p, j) => this.vertex(p, r.colour, r.pointWeights?.[j] ?? r.weights)))
    for (let i = 0; i + 1 < rings.length; i++) {
      for (let j = 0; j < n; j++) {
        const k = (j + 1) % n
        tris.push([ids[i][j], ids[i][k], ids[i + 1][k]], [ids[i][j], ids[i + 1][k], ids[i + 1][j]])
      }
    }
    const cap = (ring: Ring, rid: number[], at: Vec3 | boolean | undefined, start: boolean): void => {
      if (at === undefined || at === false) return
      const c = this.vertex(at === true ? centroid(ring.points) : at, ring.colour, ring.weights)
      for (let j = 0; j < n; j++) {
        const k = (j + 1) % n
        tris.push(start ? [c, rid[k], rid[j]] : [c, rid[j], rid[k]])
      }
    }
    cap(rings[0], ids[0], opts.capStart, true)
    cap(rings[rings.length - 1], ids[ids.length - 1], opts.capEnd, false)
    const inside = opts.inside ?? centroid(rings.map(r => centroid(r.points)))
    let facing = 0
    for (const [a, b, c] of tris) {
      const pa = this.at(a); const pb = this.at(b); const pc = this.at(c)
      const nrm = cross(sub(pb, pa), sub(pc, pa))
      facing += dot(nrm, sub(centroid([pa, pb, pc]), inside))
    }
    for (const [a, b, c] of tris) {
      if (facing >= 0) this.idx.push(a, b, c)
      else this.idx.push(a, c, b)
    }
  }

  private at (i: number): Vec3 {
    return [this.pos[3 * i], this.pos[3 * i + 1], this.pos[3 * i + 2]]
  }

  /** A morph target: each tagged vertex's offset from `delta` (null leaves it still). */
  morph (delta: (p: Vec3, tag: Tag) => Vec3 | null): Float32Array {
    const out = new Float32Array(this.pos.length)
    for (let i = 0; i < this.tags.length; i++) {
      const tag = this.tags[i]
      const d = tag == null ? null : delta(this.at(i), tag)
      if (d != null) out.set(d, 3 * i)
    }
    return out
  }

  /** Typed arrays for the primitive: positions, smooth normals, colours, joints, weights, indices. */
  build (): { position: Float32Array, normal: Float32Array, colour: Uint8Array, joints: Uint8Array, weights: Float32Array, indices: Uint16Array } {
    const count = this.pos.length / 3
    if (count > 65535) throw new Error('too many vertices for 16-bit indices')
    // Smooth normals over vertices sharing a position (rings repeated where the colour changes).
    const key = (i: number): string => `${Math.round(this.pos[3 * i] * 1e5)},${Math.round(this.pos[3 * i + 1] * 1e5)},${Math.round(this.pos[3 * i + 2] * 1e5)}`
    const sums = new Map<string, Vec3>()
    for (let t = 0; t < this.idx.length; t += 3) {
      const [a, b, c] = [this.idx[t], this.idx[t + 1], this.idx[t + 2]]
      const pa = this.at(a)
      const nrm = cross(sub(this.at(b), pa), sub(this.at(c), pa))
      for (const v of [a, b, c]) {
        const k = key(v)
        sums.set(k, add(sums.get(k) ?? [0, 0, 0], nrm))
      }
    }
    const normal = new Float32Array(count * 3)
    for (let i = 0; i < count; i++) {
      let nrm = normalize(sums.get(key(i)) ?? [0, 1, 0])
      if (nrm[0] === 0 && nrm[1] === 0 && nrm[2] === 0) nrm = [0, 1, 0]
      normal.set(nrm, 3 * i)
    }
    const colour = new Uint8Array(count * 4)
    for (let i = 0; i < count; i++) {
      for (let k = 0; k < 3; k++) colour[4 * i + k] = Math.round(Math.min(1, Math.max(0, this.col[3 * i + k])) * 255)
      colour[4 * i + 3] = 255
    }
    return {
      position: new Float32Array(this.pos),
      normal,
      colour,
      joints: new Uint8Array(this.jnt),
      weights: new Float32Array(this.wgt),
      indices: new Uint16Array(this.idx)
    }
  }
}
