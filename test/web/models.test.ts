/**
 * The model pipeline's checks (web/src/models), in Node on GLBs built in the test: each limit
 * passed gives its named error before three.js parses anything; a GLB whose images follow its
 * geometry offers the geometry stage at the byte where its last non-image bufferView ends, and that
 * untextured copy parses; meshopt-compressed and KTX2-textured models pass the checks and a
 * meshopt one decodes in three's GLTFLoader; a parse past its deadline fails and its late result
 * is disposed; the page's CSP lets WebAssembly compile but not strings be evaluated, which only the
 * Basis transcoder's worker file may do.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { join } from 'node:path'
import { KTX2_WORKER_PATH, serveStatic } from '../../src/api/static.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js'
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js'
import type { Mesh } from 'three'
import {
  checkGltf, checkImage, detectFormat, geometryCut, type GltfJson, imageSize, modelBounds, readGlbPrefix, stripToGeometry
} from '../../web/src/models/gltf.ts'
import {
  MAX_MODEL_BYTES, MAX_MODEL_JSON_BYTES, MAX_MODEL_MATERIALS, MAX_MODEL_MESHES, MAX_MODEL_NODES, MAX_MODEL_TEXTURES,
  MAX_MODEL_VERTICES, MAX_TEXTURE_PIXELS, MAX_TEXTURE_SIDE, MODEL_LOAD_TIMEOUT_MS
} from '../../web/src/models/limits.ts'
import { withTimeout } from '../../web/src/models/loader.ts'
import { ktx2, model, png, pngClaiming } from './models-fixtures.ts'

function rejectsNamed (fn: () => unknown, name: string): void {
  assert.throws(fn, (err: Error) => { assert.equal(err.name, name, err.message); return true })
}

function layoutOf (glb: Uint8Array): NonNullable<ReturnType<typeof readGlbPrefix>> {
  const l = readGlbPrefix(glb, true)
  assert.ok(l != null)
  return l
}

/** The glTF JSON of a model with `n` of something (empty entries), for the count limits. */
function withCount (key: string, n: number): GltfJson {
  const entry = key === 'meshes' ? { primitives: [] } : {}
  return { asset: { version: '2.0' }, [key]: Array.from({ length: n }, () => entry) }
}

async function parseInThree (glb: Uint8Array): Promise<Mesh[]> {
  const loader = new GLTFLoader().setMeshoptDecoder(MeshoptDecoder)
  const gltf = await loader.parseAsync(glb.slice().buffer, '')
  const meshes: Mesh[] = []
  gltf.scene.traverse(o => { if ((o as Mesh).isMesh === true) meshes.push(o as Mesh) })
  return meshes
}

describe('model checks before parsing', () => {
  it('a text file is NotAModelError; GLB and glTF JSON are told apart from their first bytes', async () => {
    const text = new TextEncoder().encode('hello, this is not a model\n')
    rejectsNamed(() => detectFormat(text, false), 'NotAModelError')
    assert.equal(detectFormat(await model(), false), 'glb')
    assert.equal(detectFormat(new TextEncoder().encode('  {"asset":{"version":"2.0"}}'), true), 'gltf')
    assert.equal(detectFormat(new Uint8Array([0x67, 0x6c]), false), undefined, 'two bytes of a GLB: wait')
    rejectsNamed(() => detectFormat(new Uint8Array([0x67, 0x6c]), true), 'NotAModelError')
    rejectsNamed(() => readGlbPrefix(new TextEncoder().encode('{"not":"gltf", "a": 1, "b": 2, "c": 3}'), true), 'NotAModelError')
  })

  it('a GLB over MAX_MODEL_BYTES or with JSON over MAX_MODEL_JSON_BYTES fails from its header', async () => {
    const head = (await model()).slice(0, 20)
    const big = head.slice()
    new DataView(big.buffer).setUint32(8, MAX_MODEL_BYTES + 1, true)
    rejectsNamed(() => readGlbPrefix(big, false), 'ModelTooLargeError')
    const json = head.slice()
    new DataView(json.buffer).setUint32(8, MAX_MODEL_BYTES, true)
    new DataView(json.buffer).setUint32(12, MAX_MODEL_JSON_BYTES + 4, true)
    rejectsNamed(() => readGlbPrefix(json, false), 'ModelJsonTooLargeError')
    assert.equal(readGlbPrefix(head, false), undefined, 'a header alone: wait for the JSON')
  })

  it('vertices over MAX_MODEL_VERTICES (summed over primitives) is TooManyVerticesError; at the limit passes', async () => {
    const per = 40_000
    const at = await model({ vertices: per, primitives: MAX_MODEL_VERTICES / per })
    assert.equal(checkGltf(layoutOf(at).json, layoutOf(at).binLength).vertices, MAX_MODEL_VERTICES)
    const over = await model({ vertices: per, primitives: MAX_MODEL_VERTICES / per + 1 })
    rejectsNamed(() => checkGltf(layoutOf(over).json, layoutOf(over).binLength), 'TooManyVerticesError')
  })

  it('nodes, meshes, materials and textures past their limits get their named errors', () => {
    for (const [key, max, name] of [
      ['nodes', MAX_MODEL_NODES, 'TooManyNodesError'], ['meshes', MAX_MODEL_MESHES, 'TooManyNodesError'],
      ['materials', MAX_MODEL_MATERIALS, 'TooManyMaterialsError'], ['textures', MAX_MODEL_TEXTURES, 'TooManyMaterialsError']
    ] as const) {
      checkGltf(withCount(key, max))
      rejectsNamed(() => checkGltf(withCount(key, max + 1)), name)
    }
  })

  it('texture sizes come from PNG, JPEG and KTX2 headers; past MAX_TEXTURE_SIDE or MAX_TEXTURE_PIXELS is TextureTooLargeError', () => {
    assert.deepEqual(imageSize(png(8, 4)), { width: 8, height: 4, format: 'png' })
    assert.deepEqual(imageSize(ktx2(4, 2)), { width: 4, height: 2, format: 'ktx2' })
    // A JPEG's header: SOI, an APP0 segment, then SOF0 with height 300 and width 500.
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 17, 8, 0x01, 0x2c, 0x01, 0xf4, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    assert.deepEqual(imageSize(jpeg), { width: 500, height: 300, format: 'jpeg' })
    const side = Math.sqrt(MAX_TEXTURE_PIXELS)
    checkImage(pngClaiming(side, side), 'at the limit')
    rejectsNamed(() => checkImage(pngClaiming(side + 1, side), 'pixels'), 'TextureTooLargeError')
    rejectsNamed(() => checkImage(pngClaiming(MAX_TEXTURE_SIDE + 1, 1), 'side'), 'TextureTooLargeError')
    const k = ktx2(1, 1)
    new DataView(k.buffer, k.byteOffset).setUint32(20, MAX_TEXTURE_SIDE + 1, true)
    rejectsNamed(() => checkImage(k, 'ktx2'), 'TextureTooLargeError')
    rejectsNamed(() => checkImage(new TextEncoder().encode('GIF89a not supported here'), 'gif'), 'MalformedModelError')
  })

  it('ranges outside the data and a node cycle are MalformedModelError', async () => {
    const base = layoutOf(await model({ vertices: 8 }))
    const cases: Array<[string, (j: GltfJson) => void]> = [
      ['accessor past its bufferView', j => { j.accessors[0].count += 1 }],
      ['bufferView past its buffer', j => { j.bufferViews[0].byteLength += 4096 }],
      ['buffer longer than the BIN chunk', j => { j.buffers[0].byteLength += 4096 }],
      ['missing accessor', j => { j.meshes[0].primitives[0].attributes.POSITION = 99 }],
      ['node cycle', j => { j.nodes.push({ children: [2] }, { children: [1] }) }],
      ['node with two parents', j => { j.nodes.push({ children: [0] }, { children: [0] }) }]
    ]
    checkGltf(base.json, base.binLength)
    for (const [what, edit] of cases) {
      const j = structuredClone(base.json)
      edit(j)
      assert.throws(() => checkGltf(j, base.binLength), (err: Error) => err.name === 'MalformedModelError', what)
    }
  })

  it('bounds come from POSITION min/max through node transforms', () => {
    const json: GltfJson = {
      asset: { version: '2.0' },
      scenes: [{ nodes: [0] }],
      nodes: [{ translation: [10, 0, 0], scale: [2, 2, 2], children: [1] }, { mesh: 0, translation: [0, 1, 0] }],
      meshes: [{ primitives: [{ attributes: { POSITION: 0 } }] }],
      accessors: [{ componentType: 5126, type: 'VEC3', count: 0, min: [-1, 0, -1], max: [1, 2, 1] }]
    }
    assert.deepEqual(modelBounds(json), { min: [8, 2, -2], max: [12, 6, 2] })
  })
})

describe('early stages and compressed formats', () => {
  it('a GLB with its images after its geometry offers the untextured geometry once those bytes are in', async () => {
    const glb = await model({ vertices: 4000, image: { data: png(64, 64), mime: 'image/png' } })
    const full = layoutOf(glb)
    const imageView = full.json.bufferViews[full.json.images[0].bufferView]
    const geoEnd = Math.max(...(full.json.bufferViews as Array<{ byteOffset?: number, byteLength: number }>)
      .filter((_, i) => i !== full.json.images[0].bufferView).map(v => (v.byteOffset ?? 0) + v.byteLength))
    // Stream it 64 bytes at a time: the stage comes at the first prefix holding every geometry byte.
    let offered: number | undefined
    for (let got = 64; got < glb.length && offered == null; got += 64) {
      const l = readGlbPrefix(glb.subarray(0, got), false)
      if (l == null) continue
      const cut = geometryCut(l.json, l)
      assert.equal(cut, full.binStart + geoEnd)
      if (got >= (cut as number)) offered = got
    }
    assert.equal(offered, Math.ceil((full.binStart + geoEnd) / 64) * 64)
    assert.ok(full.binStart + geoEnd <= full.binStart + imageView.byteOffset, 'the cut comes before the image')
    const part = stripToGeometry(full.json, full, glb.subarray(0, offered), full.binStart + geoEnd)
    const meshes = await parseInThree(part)
    assert.equal(meshes.length, 1)
    assert.equal(meshes[0].geometry.attributes.position.count, 4000)
    assert.equal((meshes[0].material as { map?: unknown }).map ?? null, null, 'untextured')
    // Images first (or none) means no geometry stage.
    const imagesFirst = structuredClone(full.json)
    imagesFirst.bufferViews[imagesFirst.images[0].bufferView].byteOffset = 0
    assert.equal(geometryCut(imagesFirst, full), undefined)
    assert.equal(geometryCut(layoutOf(await model({ vertices: 8 })).json, full), undefined)
  })

  it('a meshopt-compressed GLB passes the checks and decodes in three with its vertices', async () => {
    const glb = await model({ vertices: 2000, meshopt: true })
    const l = layoutOf(glb)
    assert.ok((l.json.extensionsRequired as string[]).includes('EXT_meshopt_compression'))
    assert.equal(checkGltf(l.json, l.binLength).vertices, 2000)
    const meshes = await parseInThree(glb)
    assert.equal(meshes[0].geometry.attributes.position.count, 2000)
    // A view that would decode to more than its declared length is refused.
    const j = structuredClone(l.json)
    const view = (j.bufferViews as Array<{ extensions?: { EXT_meshopt_compression?: { count: number } } }>).find(v => v.extensions?.EXT_meshopt_compression != null)
    ;(view as { extensions: { EXT_meshopt_compression: { count: number } } }).extensions.EXT_meshopt_compression.count *= 100
    rejectsNamed(() => checkGltf(j, l.binLength), 'MalformedModelError')
  })

  it('a KTX2-textured GLB passes; a KTX2 texture past the limits fails by its header', async () => {
    const ok = await model({ vertices: 4, image: { data: ktx2(4, 4), mime: 'image/ktx2' } })
    const l = layoutOf(ok)
    checkGltf(l.json, l.binLength)
    assert.deepEqual((l.json.extensionsRequired as string[]), ['KHR_texture_basisu'])
    const view = l.json.bufferViews[l.json.images[0].bufferView]
    const img = ok.subarray(l.binStart + view.byteOffset, l.binStart + view.byteOffset + view.byteLength)
    checkImage(img, 'ktx2')
    const big = ktx2(1, 1)
    new DataView(big.buffer, big.byteOffset).setUint32(24, MAX_TEXTURE_PIXELS, true)
    rejectsNamed(() => checkImage(big, 'ktx2'), 'TextureTooLargeError')
  })

  it('a parse past its deadline is ModelLoadTimeoutError and its late result is disposed', async () => {
    assert.ok(MODEL_LOAD_TIMEOUT_MS > 0)
    let finish!: (v: string) => void
    const slow = new Promise<string>(resolve => { finish = resolve })
    let late: string | undefined
    const disposed = new Promise<void>(resolve => {
      void withTimeout(slow, 50, v => { late = v; resolve() }).then(() => assert.fail('should time out'), (err: Error) => {
        assert.equal(err.name, 'ModelLoadTimeoutError')
        finish('late model')
      })
    })
    await disposed
    assert.equal(late, 'late model')
    assert.equal(await withTimeout(Promise.resolve('quick'), 50, () => assert.fail('not late')), 'quick')
  })
})

describe('the CSP the pipeline runs under', () => {
  it('the page may compile WebAssembly but not evaluate strings; only the transcoder worker file may', async t => {
    const defer = cleanups(t)
    const root = await tempDir(defer, 'models-static')
    await writeFile(join(root, 'index.html'), '<!doctype html>')
    await mkdir(join(root, 'basis'))
    await writeFile(join(root, KTX2_WORKER_PATH), '/* worker */')
    const server = createServer((req, res) => {
      serveStatic(root, req, res, new URL(req.url ?? '/', 'http://127.0.0.1')).catch(() => { res.statusCode = 500; res.end() })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    defer(async () => { server.close() })
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const csp = async (path: string): Promise<string[]> => {
      const res = await fetch(base + path)
      assert.equal(res.status, 200, path)
      await res.arrayBuffer()
      return (res.headers.get('content-security-policy') ?? '').split(';').map(x => x.trim())
    }
    const page = await csp('/')
    const script = page.find(d => d.startsWith('script-src')) ?? ''
    assert.ok(script.includes("'wasm-unsafe-eval'"), script)
    assert.ok(!script.includes("'unsafe-eval'"), script)
    const worker = await csp(KTX2_WORKER_PATH)
    assert.ok(worker.includes("default-src 'none'"), worker.join('; '))
    assert.ok(worker.find(d => d.startsWith('script-src'))?.includes("'unsafe-eval'"), worker.join('; '))
  })
})
