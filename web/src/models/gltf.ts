/**
 * Pure checks of a glTF model before three.js sees it: the GLB container read from a prefix of
 * its bytes (so a streaming download can act as soon as the JSON chunk is in), the JSON's counts
 * and ranges against the named limits, texture sizes from image headers (PNG, JPEG, KTX2, WebP)
 * without decoding, the model's bounds from accessor min/max and node transforms, and the cut of a
 * GLB whose geometry comes before its images (an untextured copy to show while images stream).
 * No three.js here: this runs in Node's tests as it is.
 */
import {
  MalformedModelError, MAX_MODEL_BYTES, MAX_MODEL_JSON_BYTES, MAX_MODEL_MATERIALS, MAX_MODEL_MESHES,
  MAX_MODEL_NODES, MAX_MODEL_TEXTURES, MAX_MODEL_VERTICES, MAX_TEXTURE_PIXELS, MAX_TEXTURE_SIDE,
  ModelJsonTooLargeError, ModelTooLargeError, NotAModelError, TextureTooLargeError, TooManyMaterialsError,
  TooManyNodesError, TooManyVerticesError
} from './limits.ts'

/* eslint-disable @typescript-eslint/no-explicit-any */
export type GltfJson = Record<string, any>

const GLB_MAGIC = 0x46546c67
const CHUNK_JSON = 0x4e4f534a
const CHUNK_BIN = 0x004e4942

export type ModelFormat = 'glb' | 'gltf'

/** 'glb' or 'gltf' from the first bytes, undefined if too few bytes yet; NotAModelError otherwise. */
export function detectFormat (bytes: Uint8Array, complete: boolean): ModelFormat | undefined {
  let i = 0
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++
  if (i < bytes.length && bytes[i] === 0x7b) return 'gltf'
  if (bytes.length >= 4 && u32(bytes, 0) === GLB_MAGIC) return 'glb'
  const glbSoFar = [0x67, 0x6c, 0x54, 0x46].every((c, k) => k >= bytes.length || bytes[k] === c)
  if (!complete && (i >= bytes.length || (bytes.length < 4 && glbSoFar))) return undefined
  throw new NotAModelError('not a glTF or GLB model')
}

export interface GlbLayout {
  /** Total length from the header. */
  length: number
  json: GltfJson
  jsonBytes: number
  /** Where the BIN chunk's data starts in the file, and its length (0 when there is none). */
  binStart: number
  binLength: number
}

/**
 * The GLB's layout from a prefix of its bytes: undefined until the JSON chunk and the BIN chunk's
 * header (or the end of the file) have arrived. `complete` says the prefix is the whole file.
 */
export function readGlbPrefix (bytes: Uint8Array, complete: boolean): GlbLayout | undefined {
  if (bytes.length < 20) {
    if (complete) throw new MalformedModelError('GLB shorter than its header')
    return undefined
  }
  if (u32(bytes, 0) !== GLB_MAGIC) throw new NotAModelError('not a GLB model')
  if (u32(bytes, 4) !== 2) throw new MalformedModelError(`GLB version ${u32(bytes, 4)} is not 2`)
  const length = u32(bytes, 8)
  if (length > MAX_MODEL_BYTES) throw new ModelTooLargeError(`model is ${length} bytes, over ${MAX_MODEL_BYTES}`)
  const jsonLength = u32(bytes, 12)
  if (u32(bytes, 16) !== CHUNK_JSON) throw new MalformedModelError('GLB does not start with a JSON chunk')
  if (jsonLength > MAX_MODEL_JSON_BYTES) throw new ModelJsonTooLargeError(`glTF JSON is ${jsonLength} bytes, over ${MAX_MODEL_JSON_BYTES}`)
  const jsonEnd = 20 + jsonLength
  if (jsonEnd > length) throw new MalformedModelError('GLB JSON chunk runs past the file')
  if (complete && bytes.length < length) throw new MalformedModelError(`GLB is ${bytes.length} bytes, its header says ${length}`)
  const binHeaderEnd = jsonEnd + 8
  const hasBin = length >= binHeaderEnd
  if (bytes.length < (hasBin ? binHeaderEnd : jsonEnd)) return undefined
  const json = parseJson(bytes.subarray(20, jsonEnd))
  let binStart = 0
  let binLength = 0
  if (hasBin && u32(bytes, jsonEnd + 4) === CHUNK_BIN) {
    binStart = binHeaderEnd
    binLength = u32(bytes, jsonEnd)
    if (binStart + binLength > length) throw new MalformedModelError('GLB BIN chunk runs past the file')
  }
  return { length, json, jsonBytes: jsonLength, binStart, binLength }
}

/** The JSON of a .gltf file (or a GLB's JSON chunk), within MAX_MODEL_JSON_BYTES. */
export function parseJson (bytes: Uint8Array): GltfJson {
  if (bytes.length > MAX_MODEL_JSON_BYTES) throw new ModelJsonTooLargeError(`glTF JSON is ${bytes.length} bytes, over ${MAX_MODEL_JSON_BYTES}`)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new NotAModelError('not a glTF or GLB model (JSON does not parse)')
  }
  if (json == null || typeof json !== 'object' || Array.isArray(json) || typeof (json as GltfJson).asset !== 'object') {
    throw new NotAModelError('not a glTF model (no asset)')
  }
  return json as GltfJson
}

const COMPONENT_BYTES: Record<number, number> = { 5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4 }
const TYPE_COUNT: Record<string, number> = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT2: 4, MAT3: 9, MAT4: 16 }

function list (json: GltfJson, key: string): any[] {
  const v = json[key]
  if (v == null) return []
  if (!Array.isArray(v)) throw new MalformedModelError(`${key} is not an array`)
  return v
}

function index (v: unknown, n: number, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= n) throw new MalformedModelError(`${what} refers to ${String(v)}, not one of ${n}`)
  return v as number
}

function nonNeg (v: unknown, what: string, dflt?: number): number {
  if (v == null && dflt != null) return dflt
  if (!Number.isInteger(v) || (v as number) < 0) throw new MalformedModelError(`${what} is not a non-negative integer`)
  return v as number
}

/**
 * The counts and ranges of a model's JSON against the limits. `glbBin` is the BIN chunk's length
 * for a GLB (buffer 0 without a uri is that chunk), undefined for a .gltf.
 */
export function checkGltf (json: GltfJson, glbBin?: number): { vertices: number } {
  const nodes = list(json, 'nodes')
  const meshes = list(json, 'meshes')
  const materials = list(json, 'materials')
  const textures = list(json, 'textures')
  const images = list(json, 'images')
  const buffers = list(json, 'buffers')
  const views = list(json, 'bufferViews')
  const accessors = list(json, 'accessors')
  if (nodes.length > MAX_MODEL_NODES) throw new TooManyNodesError(`${nodes.length} nodes, over ${MAX_MODEL_NODES}`)
  if (meshes.length > MAX_MODEL_MESHES) throw new TooManyNodesError(`${meshes.length} meshes, over ${MAX_MODEL_MESHES}`)
  if (materials.length > MAX_MODEL_MATERIALS) throw new TooManyMaterialsError(`${materials.length} materials, over ${MAX_MODEL_MATERIALS}`)
  if (textures.length > MAX_MODEL_TEXTURES || images.length > MAX_MODEL_TEXTURES) {
    throw new TooManyMaterialsError(`${Math.max(textures.length, images.length)} textures, over ${MAX_MODEL_TEXTURES}`)
  }
  // Buffers: declared sizes, and buffer 0 of a GLB is the BIN chunk.
  const bufLen: number[] = []
  let declared = 0
  buffers.forEach((b, i) => {
    const n = nonNeg(b?.byteLength, `buffers[${i}].byteLength`)
    const fallback = b?.extensions?.EXT_meshopt_compression?.fallback === true
    if (b?.uri == null && !fallback) {
      if (glbBin == null || i !== 0) throw new MalformedModelError(`buffers[${i}] has no data`)
      if (n > glbBin) throw new MalformedModelError(`buffers[0] is ${n} bytes, the BIN chunk ${glbBin}`)
    }
    if (!fallback) declared += n
    bufLen.push(n)
  })
  if (declared > MAX_MODEL_BYTES) throw new ModelTooLargeError(`buffers are ${declared} bytes, over ${MAX_MODEL_BYTES}`)
  let decoded = 0
  const viewLen = views.map((v, i) => {
    const b = index(v?.buffer, buffers.length, `bufferViews[${i}].buffer`)
    const off = nonNeg(v?.byteOffset, `bufferViews[${i}].byteOffset`, 0)
    const len = nonNeg(v?.byteLength, `bufferViews[${i}].byteLength`)
    if (off + len > bufLen[b]) throw new MalformedModelError(`bufferViews[${i}] ends at ${off + len}, past buffers[${b}] (${bufLen[b]} bytes)`)
    const m = v?.extensions?.EXT_meshopt_compression
    if (m != null) {
      const mb = index(m.buffer, buffers.length, `bufferViews[${i}] meshopt buffer`)
      const mo = nonNeg(m.byteOffset, `bufferViews[${i}] meshopt byteOffset`, 0)
      const ml = nonNeg(m.byteLength, `bufferViews[${i}] meshopt byteLength`)
      if (mo + ml > bufLen[mb]) throw new MalformedModelError(`bufferViews[${i}] meshopt data runs past buffers[${mb}]`)
      const out = nonNeg(m.count, 'meshopt count') * nonNeg(m.byteStride, 'meshopt byteStride')
      if (out > len) throw new MalformedModelError(`bufferViews[${i}] decodes to ${out} bytes, more than its ${len}`)
      decoded += out
    }
    return len
  })
  if (decoded > MAX_MODEL_BYTES) throw new ModelTooLargeError(`meshopt data decodes to ${decoded} bytes, over ${MAX_MODEL_BYTES}`)
  accessors.forEach((a, i) => {
    const comp = COMPONENT_BYTES[a?.componentType]
    const n = TYPE_COUNT[a?.type]
    if (comp == null || n == null) throw new MalformedModelError(`accessors[${i}] has an unknown type`)
    const count = nonNeg(a.count, `accessors[${i}].count`)
    if (count > MAX_MODEL_BYTES) throw new MalformedModelError(`accessors[${i}].count ${count} is beyond any buffer`)
    const elem = comp * n
    if (a.bufferView != null) {
      const v = index(a.bufferView, views.length, `accessors[${i}].bufferView`)
      const off = nonNeg(a.byteOffset, `accessors[${i}].byteOffset`, 0)
      const stride = nonNeg(views[v].byteStride, `bufferViews[${v}].byteStride`, 0) || elem
      const end = count === 0 ? off : off + stride * (count - 1) + elem
      if (end > viewLen[v]) throw new MalformedModelError(`accessors[${i}] ends at ${end}, past bufferViews[${v}] (${viewLen[v]} bytes)`)
    }
    const s = a.sparse
    if (s != null) {
      const sc = nonNeg(s.count, `accessors[${i}].sparse.count`)
      if (sc > count) throw new MalformedModelError(`accessors[${i}].sparse.count is over its count`)
      for (const [part, size] of [['indices', COMPONENT_BYTES[s.indices?.componentType] ?? 0], ['values', elem]] as const) {
        const p = s[part]
        const v = index(p?.bufferView, views.length, `accessors[${i}].sparse.${part}.bufferView`)
        if (size === 0) throw new MalformedModelError(`accessors[${i}].sparse.indices has an unknown type`)
        if (nonNeg(p.byteOffset, 'sparse byteOffset', 0) + sc * size > viewLen[v]) throw new MalformedModelError(`accessors[${i}].sparse.${part} runs past bufferViews[${v}]`)
      }
    }
  })
  // Meshes: vertices, and the indices they refer to.
  let vertices = 0
  meshes.forEach((m, i) => {
    const prims = m?.primitives
    if (!Array.isArray(prims)) throw new MalformedModelError(`meshes[${i}] has no primitives`)
    for (const p of prims) {
      const attrs = p?.attributes ?? {}
      for (const k of Object.keys(attrs)) index(attrs[k], accessors.length, `meshes[${i}] attribute ${k}`)
      if (attrs.POSITION != null) vertices += accessors[attrs.POSITION].count as number
      if (p.indices != null) index(p.indices, accessors.length, `meshes[${i}] indices`)
      if (p.material != null) index(p.material, materials.length, `meshes[${i}] material`)
    }
  })
  if (vertices > MAX_MODEL_VERTICES) throw new TooManyVerticesError(`${vertices} vertices, over ${MAX_MODEL_VERTICES}`)
  // Node tree: valid references, one parent each, no cycles (which would hang a traversal).
  const parent = new Array<number>(nodes.length).fill(-1)
  nodes.forEach((n, i) => {
    if (n?.mesh != null) index(n.mesh, meshes.length, `nodes[${i}].mesh`)
    for (const c of n?.children ?? []) {
      const ci = index(c, nodes.length, `nodes[${i}].children`)
      if (parent[ci] !== -1 || ci === i) throw new MalformedModelError(`nodes[${ci}] has more than one parent`)
      parent[ci] = i
    }
  })
  for (let i = 0; i < nodes.length; i++) {
    let at = i
    for (let steps = 0; parent[at] !== -1; steps++) {
      if (steps > nodes.length) throw new MalformedModelError('the node tree has a cycle')
      at = parent[at]
    }
  }
  for (const [si, s] of list(json, 'scenes').entries()) for (const n of s?.nodes ?? []) index(n, nodes.length, `scenes[${si}].nodes`)
  textures.forEach((t, i) => {
    const src = t?.source ?? t?.extensions?.KHR_texture_basisu?.source ?? t?.extensions?.EXT_texture_webp?.source
    if (src != null) index(src, images.length, `textures[${i}].source`)
    for (const e of Object.values(t?.extensions ?? {}) as any[]) if (e?.source != null) index(e.source, images.length, `textures[${i}] extension source`)
  })
  images.forEach((im, i) => { if (im?.bufferView != null) index(im.bufferView, views.length, `images[${i}].bufferView`) })
  return { vertices }
}

/** Width and height of an image from its first bytes (PNG, JPEG, KTX2, WebP); undefined if not known. */
export function imageSize (b: Uint8Array): { width: number, height: number, format: string } | undefined {
  if (b.length >= 24 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) {
    return { width: u32be(b, 16), height: u32be(b, 20), format: 'png' }
  }
  if (b.length >= 48 && b[0] === 0xab && b[1] === 0x4b && b[2] === 0x54 && b[3] === 0x58 && b[4] === 0x20 && b[5] === 0x32 && b[6] === 0x30) {
    // KTX2: pixelWidth at 20, pixelHeight at 24, depth 28, layers 32, faces 36.
    const layers = Math.max(1, u32(b, 32)) * Math.max(1, u32(b, 36)) * Math.max(1, u32(b, 28))
    return { width: u32(b, 20), height: Math.max(1, u32(b, 24)) * layers, format: 'ktx2' }
  }
  if (b.length >= 30 && u32be(b, 0) === 0x52494646 && u32be(b, 8) === 0x57454250) {
    const kind = u32be(b, 12)
    if (kind === 0x56503858) return { width: 1 + (b[24] | b[25] << 8 | b[26] << 16), height: 1 + (b[27] | b[28] << 8 | b[29] << 16), format: 'webp' }
    if (kind === 0x5650384c) { const v = u32(b, 21); return { width: 1 + (v & 0x3fff), height: 1 + ((v >>> 14) & 0x3fff), format: 'webp' } }
    if (kind === 0x56503820) return { width: (b[26] | b[27] << 8) & 0x3fff, height: (b[28] | b[29] << 8) & 0x3fff, format: 'webp' }
    return undefined
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return undefined
      const marker = b[i + 1]
      if (marker === 0xff) { i++; continue }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue }
      const len = b[i + 2] << 8 | b[i + 3]
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: b[i + 5] << 8 | b[i + 6], width: b[i + 7] << 8 | b[i + 8], format: 'jpeg' }
      }
      i += 2 + len
    }
  }
  return undefined
}

/** TextureTooLargeError (or MalformedModelError for an unknown format) unless the image fits. */
export function checkImage (bytes: Uint8Array, what: string): void {
  const s = imageSize(bytes)
  if (s == null) throw new MalformedModelError(`${what} is not a PNG, JPEG, KTX2 or WebP image`)
  if (s.width > MAX_TEXTURE_SIDE || s.height > MAX_TEXTURE_SIDE) throw new TextureTooLargeError(`${what} is ${s.width}x${s.height}, a side over ${MAX_TEXTURE_SIDE}`)
  if (s.width * s.height > MAX_TEXTURE_PIXELS) throw new TextureTooLargeError(`${what} is ${s.width}x${s.height}, over ${MAX_TEXTURE_PIXELS} pixels`)
}

/** Bytes of image i of a GLB whose whole file is `file` (undefined for an image named by uri). */
export function glbImageBytes (json: GltfJson, layout: Pick<GlbLayout, 'binStart'>, file: Uint8Array, i: number): Uint8Array | undefined {
  const im = json.images[i]
  if (im.bufferView == null) return undefined
  const v = json.bufferViews[im.bufferView]
  if (v.buffer !== 0) return undefined
  const start = layout.binStart + (v.byteOffset ?? 0)
  return file.subarray(start, start + v.byteLength)
}

/** The bytes a `data:` URI holds (its first `max` bytes at most). */
export function dataUriBytes (uri: string, max = Infinity): Uint8Array | undefined {
  const m = /^data:[^,]*?(;base64)?,/.exec(uri)
  if (m == null) return undefined
  const body = uri.slice(m[0].length)
  if (m[1] == null) return new TextEncoder().encode(decodeURIComponent(body)).subarray(0, max)
  const take = Number.isFinite(max) ? Math.ceil(max / 3) * 4 : body.length
  const bin = atob(body.slice(0, take).replace(/=+$/, '').slice(0, take - (take % 4 === 1 ? 1 : 0)))
  const out = new Uint8Array(bin.length)
  for (let k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k)
  return out
}

export interface Bounds { min: [number, number, number], max: [number, number, number] }

/** The model's bounds in its scene (POSITION min/max through node transforms), if it says. */
export function modelBounds (json: GltfJson): Bounds | undefined {
  const nodes = list(json, 'nodes')
  const scenes = list(json, 'scenes')
  const roots: number[] = scenes[json.scene ?? 0]?.nodes ?? nodes.map((_, i) => i).filter(i => !nodes.some(n => (n.children ?? []).includes(i)))
  const min: [number, number, number] = [Infinity, Infinity, Infinity]
  const max: [number, number, number] = [-Infinity, -Infinity, -Infinity]
  const walk = (i: number, parentM: number[], depth: number): void => {
    if (depth > 256) return
    const n = nodes[i]
    const m = mul(parentM, local(n))
    const mesh = n.mesh != null ? json.meshes?.[n.mesh] : undefined
    for (const p of mesh?.primitives ?? []) {
      const a = json.accessors?.[p.attributes?.POSITION]
      if (!Array.isArray(a?.min) || !Array.isArray(a?.max)) continue
      for (let c = 0; c < 8; c++) {
        const x = c & 1 ? a.max[0] : a.min[0]
        const y = c & 2 ? a.max[1] : a.min[1]
        const z = c & 4 ? a.max[2] : a.min[2]
        const w = [m[0] * x + m[4] * y + m[8] * z + m[12], m[1] * x + m[5] * y + m[9] * z + m[13], m[2] * x + m[6] * y + m[10] * z + m[14]]
        for (let k = 0; k < 3; k++) { if (w[k] < min[k]) min[k] = w[k]; if (w[k] > max[k]) max[k] = w[k] }
      }
    }
    for (const c of n.children ?? []) walk(c, m, depth + 1)
  }
  for (const r of roots) walk(r, IDENTITY, 0)
  if (!Number.isFinite(min[0]) || !Number.isFinite(max[0])) return undefined
  return { min, max }
}

const IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]

function local (n: any): number[] {
  if (Array.isArray(n.matrix) && n.matrix.length === 16) return n.matrix
  const [tx, ty, tz] = n.translation ?? [0, 0, 0]
  const [x, y, z, w] = n.rotation ?? [0, 0, 0, 1]
  const [sx, sy, sz] = n.scale ?? [1, 1, 1]
  return [
    (1 - 2 * (y * y + z * z)) * sx, 2 * (x * y + z * w) * sx, 2 * (x * z - y * w) * sx, 0,
    2 * (x * y - z * w) * sy, (1 - 2 * (x * x + z * z)) * sy, 2 * (y * z + x * w) * sy, 0,
    2 * (x * z + y * w) * sz, 2 * (y * z - x * w) * sz, (1 - 2 * (x * x + y * y)) * sz, 0,
    tx, ty, tz, 1
  ]
}

function mul (a: number[], b: number[]): number[] {
  const o = new Array<number>(16)
  for (let c = 0; c < 4; c++) {
    for (let r = 0; r < 4; r++) {
      o[c * 4 + r] = a[r] * b[c * 4] + a[4 + r] * b[c * 4 + 1] + a[8 + r] * b[c * 4 + 2] + a[12 + r] * b[c * 4 + 3]
    }
  }
  return o
}

/**
 * Where a GLB's geometry ends when every image comes after it in the BIN chunk: the file offset
 * by which all non-image bufferViews have arrived, or undefined when there are no images, data
 * lies outside the BIN chunk, or images are interleaved with geometry.
 */
export function geometryCut (json: GltfJson, layout: Pick<GlbLayout, 'binStart'>): number | undefined {
  const images = list(json, 'images')
  if (images.length === 0 || layout.binStart === 0) return undefined
  const buffers = list(json, 'buffers')
  if (buffers.some((b, i) => i !== 0 && b?.uri != null)) return undefined
  const imageViews = new Set<number>()
  for (const im of images) {
    if (im?.bufferView == null) return undefined
    imageViews.add(im.bufferView)
  }
  let geoEnd = 0
  let imgStart = Infinity
  list(json, 'bufferViews').forEach((v, i) => {
    const ranges: Array<[number, number]> = []
    if (v.buffer === 0) ranges.push([v.byteOffset ?? 0, (v.byteOffset ?? 0) + v.byteLength])
    const m = v.extensions?.EXT_meshopt_compression
    if (m != null && m.buffer === 0) ranges.push([m.byteOffset ?? 0, (m.byteOffset ?? 0) + m.byteLength])
    for (const [s, e] of ranges) {
      if (imageViews.has(i)) imgStart = Math.min(imgStart, s)
      else geoEnd = Math.max(geoEnd, e)
    }
  })
  if (geoEnd > imgStart || !Number.isFinite(imgStart)) return undefined
  return layout.binStart + geoEnd
}

/** A GLB of the first `cut` bytes of a model with its images, textures and texture references removed. */
export function stripToGeometry (json: GltfJson, layout: Pick<GlbLayout, 'binStart'>, file: Uint8Array, cut: number): Uint8Array {
  const j = structuredClone(json)
  delete j.images
  delete j.textures
  delete j.samplers
  const strip = (o: any): void => {
    if (o == null || typeof o !== 'object') return
    for (const k of Object.keys(o)) {
      if (/Texture$/.test(k) && o[k] != null && typeof o[k] === 'object' && 'index' in o[k]) delete o[k]
      else strip(o[k])
    }
  }
  for (const m of j.materials ?? []) strip(m)
  const texExt = new Set(['KHR_texture_basisu', 'EXT_texture_webp', 'EXT_texture_avif', 'KHR_texture_transform'])
  if (Array.isArray(j.extensionsUsed)) j.extensionsUsed = j.extensionsUsed.filter((e: string) => !texExt.has(e))
  if (Array.isArray(j.extensionsRequired)) j.extensionsRequired = j.extensionsRequired.filter((e: string) => !texExt.has(e))
  const binLen = cut - layout.binStart
  const padded = (binLen + 3) & ~3
  j.buffers[0].byteLength = binLen
  // Image views now point past the cut buffer; nothing refers to them any more, so drop their length.
  const imageless = new Set((json.images as any[]).map(im => im.bufferView))
  j.bufferViews = j.bufferViews.map((v: any, i: number) => imageless.has(i) ? { buffer: 0, byteOffset: 0, byteLength: 0 } : v)
  let text = new TextEncoder().encode(JSON.stringify(j))
  const jsonPad = (text.length + 3) & ~3
  const out = new Uint8Array(12 + 8 + jsonPad + 8 + padded)
  const dv = new DataView(out.buffer)
  dv.setUint32(0, GLB_MAGIC, true)
  dv.setUint32(4, 2, true)
  dv.setUint32(8, out.length, true)
  dv.setUint32(12, jsonPad, true)
  dv.setUint32(16, CHUNK_JSON, true)
  out.set(text, 20)
  out.fill(0x20, 20 + text.length, 20 + jsonPad)
  text = new Uint8Array(0)
  dv.setUint32(20 + jsonPad, padded, true)
  dv.setUint32(24 + jsonPad, CHUNK_BIN, true)
  out.set(file.subarray(layout.binStart, cut), 28 + jsonPad)
  return out
}

function u32 (b: Uint8Array, at: number): number {
  return (b[at] | b[at + 1] << 8 | b[at + 2] << 16 | b[at + 3] << 24) >>> 0
}

function u32be (b: Uint8Array, at: number): number {
  return (b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]) >>> 0
}
