/**
 * Models made in the test for the model pipeline's tests: a GLB of a given vertex count (optionally
 * textured with a PNG or KTX2 image, optionally meshopt-compressed), built with glTF-Transform; a
 * small valid PNG; a PNG header that claims a huge size; an uncompressed RGBA8 KTX2.
 */
import { deflateSync } from 'node:zlib'
import { Document, Logger, NodeIO, type Texture } from '@gltf-transform/core'
import { ALL_EXTENSIONS, KHRTextureBasisu } from '@gltf-transform/extensions'
import { meshopt } from '@gltf-transform/functions'
import { createDefaultContainer, KHR_DF_MODEL_UASTC, KHR_DF_TRANSFER_SRGB, VK_FORMAT_R8G8B8A8_SRGB, VK_FORMAT_UNDEFINED, write as writeKtx } from 'ktx-parse'
import { MeshoptDecoder, MeshoptEncoder } from 'meshoptimizer'
import { seededBytes } from '../helpers/random.ts'

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function crc32 (b: Buffer): number {
  let c = 0xffffffff
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function pngChunk (type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(body))
  return Buffer.concat([len, body, crc])
}

/** A valid RGBA PNG of one colour, or of seeded noise (which does not compress) when `noise` is given. */
export function png (width: number, height: number, rgba: [number, number, number, number] = [200, 80, 40, 255], noise?: number): Uint8Array {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr.set([8, 6, 0, 0, 0], 8)
  const row = Buffer.alloc(1 + width * 4)
  for (let x = 0; x < width; x++) row.set(rgba, 1 + x * 4)
  const raw = noise == null
    ? Buffer.concat(Array.from({ length: height }, () => row))
    : Buffer.concat(Array.from({ length: height }, (_, y) => Buffer.concat([Buffer.from([0]), seededBytes(width * 4, noise + y)])))
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))])
}

/** A PNG whose header claims `width` x `height` (its pixels are a 1x1 image: a decoder would choke). */
export function pngClaiming (width: number, height: number): Uint8Array {
  const small = Buffer.from(png(1, 1))
  small.writeUInt32BE(width, 16)
  small.writeUInt32BE(height, 20)
  small.writeUInt32BE(crc32(small.subarray(12, 29)), 29)
  return small
}

/** An uncompressed RGBA8 (sRGB) KTX2 of one colour. */
export function ktx2 (width: number, height: number, rgba: [number, number, number, number] = [40, 120, 220, 255]): Uint8Array {
  const c = createDefaultContainer()
  c.vkFormat = VK_FORMAT_R8G8B8A8_SRGB
  c.typeSize = 1
  c.pixelWidth = width
  c.pixelHeight = height
  const data = new Uint8Array(width * height * 4)
  for (let i = 0; i < width * height; i++) data.set(rgba, i * 4)
  c.levels = [{ levelData: data, uncompressedByteLength: data.length }]
  const dfd = c.dataFormatDescriptor[0]
  dfd.transferFunction = KHR_DF_TRANSFER_SRGB
  dfd.bytesPlane = [4, 0, 0, 0, 0, 0, 0, 0]
  dfd.samples = [0, 1, 2, 15].map((channelType, i) => ({
    bitOffset: i * 8, bitLength: 7, channelType, samplePosition: [0, 0, 0, 0], sampleLower: 0, sampleUpper: 255
  }))
  return writeKtx(c)
}

/**
 * A Basis UASTC KTX2 of one colour (the transcoder's path, unlike raw RGBA8): every 4x4 block is
 * UASTC's solid-colour mode (mode code 0x17 in 5 bits, then R, G, B, A; hint bits left zero).
 */
export function uastcKtx2 (width: number, height: number, rgba: [number, number, number, number] = [60, 180, 90, 255]): Uint8Array {
  const block = new Uint8Array(16)
  let bit = 0
  const put = (v: number, n: number): void => {
    for (let k = 0; k < n; k++, bit++) if ((v >> k) & 1) block[bit >> 3] |= 1 << (bit & 7)
  }
  put(0x17, 5)
  for (const c of rgba) put(c, 8)
  const blocks = Math.ceil(width / 4) * Math.ceil(height / 4)
  const data = new Uint8Array(blocks * 16)
  for (let i = 0; i < blocks; i++) data.set(block, i * 16)
  const c = createDefaultContainer()
  c.vkFormat = VK_FORMAT_UNDEFINED
  c.typeSize = 1
  c.pixelWidth = width
  c.pixelHeight = height
  c.levels = [{ levelData: data, uncompressedByteLength: data.length }]
  const dfd = c.dataFormatDescriptor[0]
  dfd.colorModel = KHR_DF_MODEL_UASTC
  dfd.transferFunction = KHR_DF_TRANSFER_SRGB
  dfd.texelBlockDimension = [3, 3, 0, 0]
  dfd.bytesPlane = [16, 0, 0, 0, 0, 0, 0, 0]
  dfd.samples = [{ bitOffset: 0, bitLength: 127, channelType: 3, samplePosition: [0, 0, 0, 0], sampleLower: 0, sampleUpper: 0xffffffff }]
  return writeKtx(c)
}

export interface ModelSpec {
  /** Vertices of the one mesh (a multiple of 4: quads along x). */
  vertices?: number
  /** Primitives that each reuse the mesh's vertices (counted once each). */
  primitives?: number
  nodes?: number
  materials?: number
  /** An image for the base colour, with its MIME type. */
  image?: { data: Uint8Array, mime: 'image/png' | 'image/jpeg' | 'image/ktx2' }
  meshopt?: boolean
}

/** A GLB as specified; geometry comes before images in its BIN chunk. */
export async function model (spec: ModelSpec = {}): Promise<Uint8Array> {
  const quads = Math.max(1, Math.floor((spec.vertices ?? 4) / 4))
  const doc = new Document().setLogger(new Logger(Logger.Verbosity.SILENT))
  const buffer = doc.createBuffer()
  const pos = new Float32Array(quads * 12)
  const uv = new Float32Array(quads * 8)
  const idx = new Uint32Array(quads * 6)
  for (let q = 0; q < quads; q++) {
    const x = q % 256
    const z = Math.floor(q / 256)
    pos.set([x, 0, z, x + 1, 0, z, x + 1, 1, z, x, 1, z], q * 12)
    uv.set([0, 1, 1, 1, 1, 0, 0, 0], q * 8)
    idx.set([0, 1, 2, 0, 2, 3].map(i => i + q * 4), q * 6)
  }
  const position = doc.createAccessor().setType('VEC3').setArray(pos).setBuffer(buffer)
  const texcoord = doc.createAccessor().setType('VEC2').setArray(uv).setBuffer(buffer)
  const indices = doc.createAccessor().setType('SCALAR').setArray(idx).setBuffer(buffer)
  let texture: Texture | undefined
  if (spec.image != null) {
    texture = doc.createTexture('base').setImage(spec.image.data).setMimeType(spec.image.mime)
    if (spec.image.mime === 'image/ktx2') doc.createExtension(KHRTextureBasisu).setRequired(true)
  }
  const materials = Array.from({ length: Math.max(1, spec.materials ?? 1) }, (_, i) => {
    const m = doc.createMaterial(`m${i}`).setBaseColorFactor([0.9, 0.5, 0.2, 1])
    if (texture != null) m.setBaseColorTexture(texture)
    return m
  })
  const mesh = doc.createMesh('grid')
  for (let p = 0; p < Math.max(1, spec.primitives ?? 1); p++) {
    mesh.addPrimitive(doc.createPrimitive().setAttribute('POSITION', position).setAttribute('TEXCOORD_0', texcoord)
      .setIndices(indices).setMaterial(materials[p % materials.length]))
  }
  const scene = doc.createScene()
  scene.addChild(doc.createNode('model').setMesh(mesh))
  for (let n = 1; n < (spec.nodes ?? 1); n++) scene.addChild(doc.createNode(`n${n}`).setTranslation([n, 0, 0]))
  // Materials beyond the primitives' are kept by hanging them on extra primitives of one mesh.
  if (materials.length > 1 && (spec.primitives ?? 1) < materials.length) {
    const extra = doc.createMesh('materials')
    for (const m of materials.slice(1)) extra.addPrimitive(doc.createPrimitive().setAttribute('POSITION', position).setMaterial(m))
    scene.addChild(doc.createNode('materials').setMesh(extra))
  }
  await MeshoptEncoder.ready
  await MeshoptDecoder.ready
  const io = new NodeIO().registerExtensions(ALL_EXTENSIONS).registerDependencies({ 'meshopt.encoder': MeshoptEncoder, 'meshopt.decoder': MeshoptDecoder })
  if (spec.meshopt === true) await doc.transform(meshopt({ encoder: MeshoptEncoder, level: 'medium' }))
  return await io.writeBinary(doc)
}

/** Reads a GLB back (meshopt decoded), to check what a fixture holds. */
export async function readModel (glb: Uint8Array): Promise<Document> {
  await MeshoptDecoder.ready
  return await new NodeIO().registerExtensions(ALL_EXTENSIONS).registerDependencies({ 'meshopt.decoder': MeshoptDecoder }).readBinary(glb)
}
