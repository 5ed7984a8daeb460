/**
 * The shape of a default avatar: a skeleton in T-pose (facing +Z, feet at y = 0, the character's
 * left at +X, as VRM 1.0 wants) and a low-poly body skinned to it: torso, neck, head with eyes,
 * brows, nose, mouth and ears, a hair style, arms with hands and thumbs, legs with shoes. Limbs
 * blend the two bones at a joint over a short span, so a walk bends them without creases.
 */
import { MeshBuilder, add, ellipse, lerp, smooth, type Rgb, type Ring, type Vec3, type Weights } from './mesh.ts'

/** The humanoid bones of the skeleton, in joint order; each maps to a VRM 1.0 humanoid bone. */
export const BONES = [
  'hips', 'spine', 'chest', 'upperChest', 'neck', 'head',
  'leftShoulder', 'leftUpperArm', 'leftLowerArm', 'leftHand',
  'rightShoulder', 'rightUpperArm', 'rightLowerArm', 'rightHand',
  'leftUpperLeg', 'leftLowerLeg', 'leftFoot', 'leftToes',
  'rightUpperLeg', 'rightLowerLeg', 'rightFoot', 'rightToes'
] as const
export type BoneName = typeof BONES[number]
/** Each bone's parent (hips is the root). */
export const PARENT: Record<BoneName, BoneName | null> = {
  hips: null, spine: 'hips', chest: 'spine', upperChest: 'chest', neck: 'upperChest', head: 'neck',
  leftShoulder: 'upperChest', leftUpperArm: 'leftShoulder', leftLowerArm: 'leftUpperArm', leftHand: 'leftLowerArm',
  rightShoulder: 'upperChest', rightUpperArm: 'rightShoulder', rightLowerArm: 'rightUpperArm', rightHand: 'rightLowerArm',
  leftUpperLeg: 'hips', leftLowerLeg: 'leftUpperLeg', leftFoot: 'leftLowerLeg', leftToes: 'leftFoot',
  rightUpperLeg: 'hips', rightLowerLeg: 'rightUpperLeg', rightFoot: 'rightLowerLeg', rightToes: 'rightFoot'
}

export type HairStyle = 'long' | 'crop' | 'bun' | 'spiky' | 'bob'

/** What makes one avatar differ from another: size, build, hair, clothes and colours (sRGB hex). */
export interface BodySpec {
  /** Overall height in metres, feet to the top of the hair. */
  height: number
  /** Width of the shoulders, 1 = average. */
  shoulders: number
  /** Width of the hips, 1 = average. */
  hips: number
  /** Thickness of the torso, 1 = average. */
  girth: number
  /** Thickness of arms and legs, 1 = average. */
  limbs: number
  /** Size of the head, 1 = average. */
  head: number
  hair: HairStyle
  sleeves: 'long' | 'short'
  legs: 'trousers' | 'shorts'
  colours: { skin: string, hair: string, top: string, bottom: string, shoes: string, eyes: string }
}

/** Height of the base figure (s = 1) from the soles to the top of the hair. */
const BASE_HEIGHT = 1.725

/** An sRGB hex colour as linear RGB (glTF vertex colours are linear). */
export function linear (hex: string): Rgb {
  const n = Number.parseInt(hex.replace('#', ''), 16)
  const ch = (c: number): number => {
    const x = c / 255
    return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4
  }
  return [ch((n >> 16) & 255), ch((n >> 8) & 255), ch(n & 255)]
}

const J = (b: BoneName): number => BONES.indexOf(b)
const mix = (a: BoneName, b: BoneName, wb: number): Weights => wb <= 0 ? [[J(a), 1]] : wb >= 1 ? [[J(b), 1]] : [[J(a), 1 - wb], [J(b), wb]]

/** The rest positions (world space, T-pose) of every bone for a spec. */
export function skeleton (spec: BodySpec): Record<BoneName, Vec3> {
  const s = spec.height / BASE_HEIGHT
  const sx = 0.17 * spec.shoulders
  const hx = 0.09 * spec.hips
  const p = (x: number, y: number, z: number): Vec3 => [x * s, y * s, z * s]
  const side = (sign: number): Array<[string, Vec3]> => {
    const l = sign > 0 ? 'left' : 'right'
    return [
      [`${l}Shoulder`, p(sign * 0.04, 1.40, 0)],
      [`${l}UpperArm`, p(sign * sx, 1.40, 0)],
      [`${l}LowerArm`, p(sign * (sx + 0.26), 1.40, 0)],
      [`${l}Hand`, p(sign * (sx + 0.51), 1.40, 0)],
      [`${l}UpperLeg`, p(sign * hx, 0.92, 0)],
      [`${l}LowerLeg`, p(sign * hx, 0.50, 0)],
      [`${l}Foot`, p(sign * hx, 0.09, 0)],
      [`${l}Toes`, p(sign * hx, 0.02, 0.11)]
    ]
  }
  return Object.fromEntries([
    ['hips', p(0, 0.95, 0)], ['spine', p(0, 1.04, 0)], ['chest', p(0, 1.16, 0)], ['upperChest', p(0, 1.28, 0)],
    ['neck', p(0, 1.43, 0)], ['head', p(0, 1.52, 0)],
    ...side(1), ...side(-1)
  ]) as Record<BoneName, Vec3>
}

interface ChainJoint { at: Vec3, radius: [number, number], bone: BoneName }

/**
 * A tube through `joints`: segment i belongs to joint i's bone and blends half-way into the
 * neighbouring bone at each end (the first end into `parent`). `colourAt(i, t)` colours the band
 * around segment i at t; a change of colour starts a new loft on the same ring, so it stays sharp.
 */
function chain (m: MeshBuilder, joints: ChainJoint[], parent: BoneName, ref: Vec3, sides: number, colourAt: (i: number, t: number) => Rgb): void {
  const ts = [0, 0.15, 0.35, 0.5, 0.65, 0.85]
  const samples: Array<{ i: number, t: number }> = []
  for (let i = 0; i + 1 < joints.length; i++) for (const t of ts) samples.push({ i, t })
  samples.push({ i: joints.length - 2, t: 1 })
  const rings: Array<{ points: Vec3[], weights: Weights }> = samples.map(({ i, t }) => {
    const a = joints[i]; const b = joints[i + 1]
    const centre = lerp(a.at, b.at, t)
    const axis: Vec3 = [b.at[0] - a.at[0], b.at[1] - a.at[1], b.at[2] - a.at[2]]
    const ra = a.radius[0] + (b.radius[0] - a.radius[0]) * t
    const rb = a.radius[1] + (b.radius[1] - a.radius[1]) * t
    const prev = i === 0 ? parent : joints[i - 1].bone
    const wPrev = 0.5 * (1 - smooth(t / 0.3))
    const wNext = 0.5 * smooth((t - 0.7) / 0.3)
    const weights: Array<[number, number]> = [[J(a.bone), 1 - wPrev - wNext]]
    if (wPrev > 0) weights.push([J(prev), wPrev])
    if (wNext > 0) weights.push([J(b.bone), wNext])
    return { points: ellipse(centre, axis, ref, ra, rb, sides), weights }
  })
  let start = 0
  for (let k = 0; k + 1 < samples.length; k++) {
    const here = samples[k]; const next = samples[k + 1]
    const colour = colourAt(here.i, here.i === next.i ? (here.t + next.t) / 2 : (here.t + 1) / 2)
    const last = k + 2 === samples.length
    const nextColour = last ? null : colourAt(next.i, samples[k + 2].i === next.i ? (next.t + samples[k + 2].t) / 2 : (next.t + 1) / 2)
    if (last || !same(colour, nextColour)) {
      const run: Ring[] = rings.slice(start, k + 2).map(r => ({ ...r, colour }))
      m.loft(run, { capStart: start === 0, capEnd: last })
      start = k + 1
    }
  }
}

const same = (a: Rgb, b: Rgb | null): boolean => b != null && a[0] === b[0] && a[1] === b[1] && a[2] === b[2]

/** A closed ellipsoid of radii `r` around `c`, all on one bone weighting. */
function ellipsoid (m: MeshBuilder, c: Vec3, r: Vec3, colour: Rgb, weights: Weights, around = 8, rings = 5): void {
  const out: Ring[] = []
  for (let k = 1; k < rings; k++) {
    const phi = Math.PI * (1 - k / rings)
    const y = c[1] + r[1] * Math.cos(phi)
    out.push({ points: ellipse([c[0], y, c[2]], [0, 1, 0], [0, 0, 1], r[2] * Math.sin(phi), r[0] * Math.sin(phi), around), colour, weights })
  }
  m.loft(out, { capStart: [c[0], c[1] - r[1], c[2]], capEnd: [c[0], c[1] + r[1], c[2]], inside: c })
}

/** A rounded box section (superellipse) across +Z at `z`: half-width `w`, from y0 to y1. */
function roundedSection (x: number, z: number, w: number, y0: number, y1: number, n: number): Vec3[] {
  const out: Vec3[] = []
  const cy = (y0 + y1) / 2; const h = (y1 - y0) / 2
  for (let j = 0; j < n; j++) {
    const t = (2 * Math.PI * j) / n
    const c = Math.cos(t); const s = Math.sin(t)
    out.push([x + w * Math.sign(c) * Math.abs(c) ** 0.6, cy + h * Math.sign(s) * Math.abs(s) ** 0.6, z])
  }
  return out
}

/** The whole body for `spec`, skinned to `skeleton(spec)`. */
export function body (spec: BodySpec): MeshBuilder {
  const m = new MeshBuilder()
  const s = spec.height / BASE_HEIGHT
  const sk = skeleton(spec)
  const col = {
    skin: linear(spec.colours.skin), hair: linear(spec.colours.hair), top: linear(spec.colours.top),
    bottom: linear(spec.colours.bottom), shoes: linear(spec.colours.shoes), eyes: linear(spec.colours.eyes),
    white: linear('#f4f1ea'), dark: linear('#1d1a1a'), lips: linear('#8c3f47')
  }
  const p = (x: number, y: number, z: number): Vec3 => [x * s, y * s, z * s]

  // Torso: superellipse sections from the crotch to the base of the neck.
  const sections: Array<[number, number, number]> = [
    [0.80, 0.13, 0.09], [0.86, 0.155, 0.10], [0.93, 0.165, 0.108], [0.95, 0.165, 0.11], [1.04, 0.15, 0.10], [1.12, 0.152, 0.105],
    [1.22, 0.168, 0.115], [1.32, 0.18, 0.112], [1.40, 0.185, 0.095], [1.45, 0.125, 0.075], [1.47, 0.07, 0.06]
  ]
  const torsoWeights = (y: number): Weights => {
    const marks: Array<[number, BoneName]> = [[0.90, 'hips'], [1.04, 'spine'], [1.16, 'chest'], [1.30, 'upperChest'], [1.44, 'neck']]
    if (y <= marks[0][0]) return [[J('hips'), 1]]
    for (let k = 0; k + 1 < marks.length; k++) {
      const [y0, b0] = marks[k]; const [y1, b1] = marks[k + 1]
      if (y <= y1) return mix(b0, b1, (y - y0) / (y1 - y0))
    }
    return [[J('neck'), 1]]
  }
  const torsoRing = ([y, w, d]: [number, number, number], colour: Rgb): Ring => {
    const widen = y <= 0.95 ? spec.hips : y >= 1.28 ? spec.shoulders : spec.hips + (spec.shoulders - spec.hips) * (y - 0.95) / 0.33
    const ww = w * widen * (1 + (spec.girth - 1) * 0.5)
    const dd = d * spec.girth
    const points: Vec3[] = []
    for (let j = 0; j < 16; j++) {
      const t = (2 * Math.PI * j) / 16
      const c = Math.cos(t); const sn = Math.sin(t)
      points.push(p(ww * Math.sign(sn) * Math.abs(sn) ** 0.8, y, dd * Math.sign(c) * Math.abs(c) ** 0.8))
    }
    // Below the waist, each side of the pelvis follows its thigh a little, so a stride bends it.
    const level = y >= 0.95 ? 0 : y >= 0.93 ? 0.08 : y >= 0.86 ? 0.3 : 0.5
    const pointWeights = level === 0
      ? undefined
      : points.map(pt => {
        const f = level * smooth(Math.abs(pt[0]) / (0.09 * spec.hips * s))
        return f <= 0 ? torsoWeights(y) : [[J('hips'), 1 - f], [J(pt[0] > 0 ? 'leftUpperLeg' : 'rightUpperLeg'), f]] as Weights
      })
    return { points, colour, weights: torsoWeights(y), pointWeights }
  }
  const waist = 3
  m.loft(sections.slice(0, waist + 1).map(x => torsoRing(x, col.bottom)), { capStart: true })
  m.loft(sections.slice(waist).map(x => torsoRing(x, col.top)), { capEnd: true })

  // Neck, from inside the chest into the head.
  chain(m, [
    { at: p(0, 1.40, 0), radius: [0.05 * s, 0.048 * s], bone: 'neck' },
    { at: p(0, 1.56, 0.005), radius: [0.046 * s, 0.044 * s], bone: 'head' }
  ], 'upperChest', [0, 0, 1], 10, () => col.skin)

  head(m, spec, s, col)

  for (const sign of [1, -1]) {
    const l = sign > 0 ? 'left' : 'right'
    const bone = (n: string): BoneName => `${l}${n}` as BoneName
    const r = (x: number): [number, number] => [x * s * spec.limbs, x * s * spec.limbs * 1.06]
    // Arm: from inside the shoulder to the wrist; sleeves colour the upper arm, or the whole arm.
    chain(m, [
      { at: p(sign * 0.07, 1.40, 0), radius: r(0.055), bone: bone('Shoulder') },
      { at: sk[bone('UpperArm')], radius: r(0.052), bone: bone('UpperArm') },
      { at: sk[bone('LowerArm')], radius: r(0.042), bone: bone('LowerArm') },
      { at: sk[bone('Hand')], radius: r(0.032), bone: bone('Hand') }
    ], 'upperChest', [0, 1, 0], 10, (i, t) => i < 1 || (i === 1 && t < 0.55) || spec.sleeves === 'long' ? col.top : col.skin)
    hand(m, sk[bone('Hand')], sign, s, spec.limbs, col.skin, J(bone('LowerArm')), J(bone('Hand')))
    // Leg: hip to ankle; shorts end above the knee.
    const hip = sk[bone('UpperLeg')]
    chain(m, [
      { at: add(hip, p(0, -0.01, 0)), radius: r(0.074), bone: bone('UpperLeg') },
      { at: sk[bone('LowerLeg')], radius: r(0.056), bone: bone('LowerLeg') },
      { at: add(sk[bone('Foot')], p(0, 0.02, 0)), radius: r(0.042), bone: bone('Foot') }
    ], 'hips', [0, 0, 1], 10, (i, t) => spec.legs === 'trousers' || (i === 0 && t < 0.7) ? col.bottom : col.skin)
    shoe(m, sk[bone('Foot')], s, col.shoes, J(bone('Foot')), J(bone('Toes')), J(bone('LowerLeg')))
  }
  return m
}

/** A mitten of a hand along ±X from the wrist, palm down, with a thumb pointing forward. */
function hand (m: MeshBuilder, wrist: Vec3, sign: number, s: number, limbs: number, skin: Rgb, forearm: number, handBone: number): void {
  const k = s * (0.85 + 0.15 * limbs)
  const sections: Array<[number, number, number]> = [[-0.01, 0.02, 0.03], [0.04, 0.023, 0.042], [0.10, 0.02, 0.045], [0.15, 0.016, 0.04], [0.18, 0.01, 0.028]]
  const rings: Ring[] = sections.map(([dx, hy, hz]) => {
    const wf = 0.5 * (1 - smooth((dx + 0.01) / 0.05))
    return {
      points: ellipse(add(wrist, [sign * dx * k, -0.004 * k, 0]), [sign, 0, 0], [0, 1, 0], hy * k, hz * k, 10),
      colour: skin,
      weights: wf > 0 ? [[handBone, 1 - wf], [forearm, wf]] : [[handBone, 1]]
    }
  })
  m.loft(rings, { capStart: true, capEnd: add(wrist, [sign * 0.195 * k, -0.004 * k, 0]) })
  const thumb: Array<[Vec3, number]> = [[[0.03, -0.006, 0.025], 0.015], [[0.065, -0.012, 0.06], 0.013], [[0.09, -0.014, 0.075], 0.011]]
  const at = (v: Vec3): Vec3 => add(wrist, [sign * v[0] * k, v[1] * k, v[2] * k])
  const trings: Ring[] = thumb.map(([v, r], i) => {
    const next = thumb[Math.min(i + 1, thumb.length - 1)][0]; const prev = thumb[Math.max(i - 1, 0)][0]
    return { points: ellipse(at(v), [sign * (next[0] - prev[0]), next[1] - prev[1], next[2] - prev[2]], [0, 1, 0], r * k, r * k, 6), colour: skin, weights: [[handBone, 1]] }
  })
  m.loft(trings, { capStart: true, capEnd: at([0.1, -0.015, 0.082]) })
}

/** A shoe under the ankle: rounded sections from heel to toe, the front bending with the toes bone. */
function shoe (m: MeshBuilder, ankle: Vec3, s: number, colour: Rgb, foot: number, toes: number, shin: number): void {
  const sections: Array<[number, number, number, number]> = [
    [-0.07, 0.035, 0.012, 0.07], [-0.055, 0.045, 0, 0.10], [0.02, 0.05, 0, 0.105], [0.08, 0.05, 0, 0.075], [0.14, 0.046, 0, 0.055], [0.18, 0.034, 0.004, 0.04]
  ]
  const rings: Ring[] = sections.map(([z, w, y0, y1]) => {
    const wt = smooth((z - 0.06) / 0.08)
    const weights: Weights = wt > 0 ? [[foot, 1 - wt], [toes, wt]] : z < -0.05 ? [[foot, 0.85], [shin, 0.15]] : [[foot, 1]]
    return { points: roundedSection(ankle[0], ankle[2] + z * s, w * s, y0 * s, y1 * s, 12), colour, weights }
  })
  m.loft(rings, { capStart: true, capEnd: true })
}

/** The face's morph targets, in order: closing each eye, and opening the mouth ("aa"). */
export const MORPHS = ['blinkLeft', 'blinkRight', 'aa'] as const

/** The offsets of one morph target for a body made by `body`. */
export function morphTarget (m: MeshBuilder, name: typeof MORPHS[number]): Float32Array {
  return m.morph((p, tag) => {
    if ((name === 'blinkLeft' && tag.part === 'leftEye') || (name === 'blinkRight' && tag.part === 'rightEye')) {
      // Squash the eye to a line a little below its middle.
      return [0, (tag.centre[1] - 0.002 - p[1]) * 0.9, (tag.centre[2] - p[2]) * 0.3]
    }
    if (name === 'aa' && tag.part === 'mouth') {
      // Open: the lips grow tall and round, mostly downwards.
      return [-(p[0] - tag.centre[0]) * 0.25, (p[1] - tag.centre[1]) * 2.2 - 0.004, 0]
    }
    return null
  })
}

/** Head with face and ears, and the spec's hair, all on the head bone. */
function head (m: MeshBuilder, spec: BodySpec, s: number, col: Record<'skin' | 'hair' | 'eyes' | 'white' | 'dark' | 'lips', Rgb>): void {
  const hb: Weights = [[J('head'), 1]]
  const k = s * spec.head
  const c: Vec3 = [0, 1.595 * s, 0.005 * s]
  const rx = 0.092 * k; const ry = 0.112 * k; const rz = 0.102 * k
  // A point on the head's surface (scaled by f) at polar angle phi from the top, azimuth theta from +Z.
  const at = (phi: number, theta: number, f: number): Vec3 => {
    const cy = Math.cos(phi)
    const taper = cy < 0 ? 1 - 0.22 * (-cy) ** 1.5 : 1
    return [c[0] + rx * f * Math.sin(phi) * Math.sin(theta) * taper, c[1] + ry * f * cy, c[2] + rz * f * Math.sin(phi) * Math.cos(theta) * (cy < 0 ? 1 - 0.08 * -cy : 1)]
  }
  const around = 14
  const ringAt = (phi: number, f: number, colour: Rgb): Ring => ({
    points: Array.from({ length: around }, (_, j) => at(phi, (2 * Math.PI * j) / around, f)), colour, weights: hb
  })
  const skull: Ring[] = []
  for (let i = 1; i < 9; i++) skull.push(ringAt((Math.PI * i) / 9, 1, col.skin))
  m.loft(skull, { capStart: at(0, 0, 1), capEnd: at(Math.PI, 0, 1), inside: c })

  // Face: a point on the front of the head at (x, y) from its centre, pushed out by `out`.
  const front = (x: number, y: number, out: number): Vec3 => {
    const zz = rz * Math.sqrt(Math.max(0, 1 - (x / rx) ** 2 - (y / ry) ** 2))
    return [c[0] + x, c[1] + y, c[2] + zz + out]
  }
  for (const sign of [1, -1]) {
    const ex = sign * 0.036 * k
    m.tag = { part: sign > 0 ? 'leftEye' : 'rightEye', centre: front(ex, 0.004 * k, 0) }
    ellipsoid(m, front(ex, 0.004 * k, -0.004 * k), [0.017 * k, 0.013 * k, 0.008 * k], col.white, hb)
    ellipsoid(m, front(ex, 0.002 * k, 0.001 * k), [0.0085 * k, 0.0105 * k, 0.006 * k], col.eyes, hb, 8, 4)
    ellipsoid(m, front(ex, 0.002 * k, 0.005 * k), [0.004 * k, 0.005 * k, 0.003 * k], col.dark, hb, 6, 3)
    m.tag = null
    ellipsoid(m, front(sign * 0.037 * k, 0.033 * k, 0), [0.02 * k, 0.0045 * k, 0.006 * k], col.hair, hb, 6, 3)
    ellipsoid(m, [c[0] + sign * rx * 0.97, c[1] - 0.005 * k, c[2] - 0.005 * k], [0.014 * k, 0.027 * k, 0.019 * k], col.skin, hb, 8, 4)
  }
  ellipsoid(m, front(0, -0.026 * k, -0.004 * k), [0.011 * k, 0.02 * k, 0.016 * k], col.skin, hb, 8, 4)
  m.tag = { part: 'mouth', centre: front(0, -0.062 * k, -0.008 * k) }
  ellipsoid(m, front(0, -0.062 * k, -0.008 * k), [0.022 * k, 0.005 * k, 0.008 * k], col.lips, hb, 8, 3)
  m.tag = null

  hair(m, spec.hair, at, c, k, col.hair, hb)
}

/** The hair: a shell over the skull whose hairline depends on the style, with extras per style. */
function hair (m: MeshBuilder, style: HairStyle, at: (phi: number, theta: number, f: number) => Vec3, c: Vec3, k: number, colour: Rgb, hb: Weights): void {
  // Hairline as the angle from the top: at the front, the sides and the back.
  const lines: Record<HairStyle, [number, number, number, number]> = {
    crop: [0.78, 1.45, 1.75, 1.05],
    bob: [0.8, 1.95, 2.0, 1.1],
    long: [0.82, 1.8, 1.95, 1.09],
    bun: [0.8, 1.55, 1.8, 1.06],
    spiky: [0.75, 1.45, 1.7, 1.06]
  }
  const [fr, sd, bk, f] = lines[style]
  const around = 16
  const line = (theta: number): number => {
    const ct = Math.cos(theta)
    return ct >= 0 ? sd + (fr - sd) * ct : sd + (bk - sd) * -ct
  }
  const rings: Ring[] = []
  const steps = 6
  for (let i = 1; i <= steps; i++) {
    rings.push({ points: Array.from({ length: around }, (_, j) => { const th = (2 * Math.PI * j) / around; return at((line(th) * i) / steps, th, f) }), colour, weights: hb })
  }
  // The lip: back under the edge, inside the skull.
  rings.push({ points: Array.from({ length: around }, (_, j) => { const th = (2 * Math.PI * j) / around; return at(line(th) * 0.97, th, 0.96) }), colour, weights: hb })
  m.loft(rings, { capStart: at(0, 0, f), inside: c })

  if (style === 'long') {
    // A fall of hair down the back to the shoulder blades.
    const fall: Ring[] = []
    const spans: Array<[number, number, number, number]> = [[0.01, 0.075, 0.05, -0.03], [-0.06, 0.09, 0.045, -0.06], [-0.15, 0.1, 0.04, -0.075], [-0.23, 0.1, 0.032, -0.088], [-0.28, 0.085, 0.02, -0.092]]
    for (const [dy, w, d, dz] of spans) {
      const down = smooth(-dy / 0.25)
      fall.push({
        points: ellipse([c[0], c[1] + dy * k, c[2] + dz * k], [0, -1, 0], [1, 0, 0], w * k, d * k, 12),
        colour,
        weights: down > 0 ? [[J('head'), 1 - 0.5 * down], [J('upperChest'), 0.5 * down]] : hb
      })
    }
    m.loft(fall, { capStart: true, capEnd: true })
  } else if (style === 'bun') {
    ellipsoid(m, [c[0], c[1] + 0.085 * k, c[2] - 0.085 * k], [0.05 * k, 0.048 * k, 0.05 * k], colour, hb, 10, 6)
  } else if (style === 'spiky') {
    const tufts: Array<[number, number]> = [[0.15, 0], [0.45, 0.6], [0.45, -0.6], [0.5, Math.PI], [0.75, 2.4], [0.75, -2.4], [0.55, 1.6], [0.55, -1.6], [0.85, Math.PI]]
    for (const [phi, theta] of tufts) {
      const base = at(phi, theta, f * 0.97)
      const dir: Vec3 = [base[0] - c[0], base[1] - c[1], base[2] - c[2]]
      const tip = add(c, [dir[0] * 1.45 + 0, dir[1] * 1.45 + 0.01 * k, dir[2] * 1.45])
      m.loft([{ points: ellipse(base, dir, [0, 0, 1], 0.03 * k, 0.03 * k, 5), colour, weights: hb }], { capStart: c, capEnd: tip, inside: c })
    }
  }
}
