/**
 * The project's default avatars (web/assets/avatars, made by tools/avatars/make.ts): each file is
 * valid glTF, a VRM 1.0 with every required humanoid bone and a CC0 licence in its meta, within
 * the size limits, stands on y = 0 at a person's height, loads with three's GLTFLoader and the VRM
 * plugin (with blink and open-mouth expressions), and is exactly what the generator makes now (so the committed files cannot drift).
 * Also: web/src/avatars/defaults.ts names every file and picks one per did stably, and the peer
 * serves a .vrm with a glTF type under its CSP.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { readFile, stat, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import validator from 'gltf-validator'
import type { Object3D, SkinnedMesh } from 'three'
import { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js'
import { VRMLoaderPlugin, type VRM } from '@pixiv/three-vrm'
import {
  AVATARS, AVATAR_DIR, AvatarLimitError, CC0_URL, MAX_AVATAR_BYTES, MAX_AVATAR_TRIANGLES, VRM_LICENSE_URL,
  checkAvatarLimits, makeAll, makeAvatar
} from '../../tools/avatars/make.ts'
import { DEFAULT_AVATARS, defaultAvatarFor, defaultAvatarUrl } from '../../web/src/avatars/defaults.ts'
import { serveStatic } from '../../src/api/static.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { seeded } from '../helpers/random.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DIR = join(ROOT, AVATAR_DIR)

/** Every bone VRM 1.0 requires in `humanoid.humanBones`. */
const REQUIRED_BONES = [
  'hips', 'spine', 'chest', 'neck', 'head',
  'leftUpperArm', 'leftLowerArm', 'leftHand', 'rightUpperArm', 'rightLowerArm', 'rightHand',
  'leftUpperLeg', 'leftLowerLeg', 'leftFoot', 'rightUpperLeg', 'rightLowerLeg', 'rightFoot'
]

interface GltfJson {
  extensionsUsed?: string[]
  nodes: Array<{ name?: string }>
  meshes: Array<{ primitives: Array<{ indices?: number, attributes: Record<string, number> }> }>
  accessors: Array<{ count: number, min?: number[], max?: number[] }>
  extensions?: { VRMC_vrm?: { specVersion: string, meta: Record<string, unknown>, humanoid: { humanBones: Record<string, { node: number }> } } }
}

/** The JSON chunk of a GLB. */
function glbJson (bytes: Uint8Array): GltfJson {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  assert.equal(view.getUint32(0, true), 0x46546c67, 'glTF magic')
  assert.equal(view.getUint32(4, true), 2, 'glTF binary version 2')
  const length = view.getUint32(12, true)
  assert.equal(view.getUint32(16, true), 0x4e4f534a, 'first chunk is JSON')
  return JSON.parse(new TextDecoder().decode(bytes.subarray(20, 20 + length))) as GltfJson
}

function triangles (json: GltfJson): number {
  let n = 0
  for (const mesh of json.meshes) for (const p of mesh.primitives) n += (p.indices === undefined ? json.accessors[p.attributes.POSITION].count : json.accessors[p.indices].count) / 3
  return n
}

const files = new Map<string, Uint8Array>()
async function file (name: string): Promise<Uint8Array> {
  let b = files.get(name)
  if (b === undefined) {
    b = new Uint8Array(await readFile(join(DIR, `${name}.vrm`)))
    files.set(name, b)
  }
  return b
}

describe('default avatar files', () => {
  it('are four, each valid glTF with no errors', async () => {
    assert.equal(AVATARS.length, 4)
    for (const def of AVATARS) {
      const report = await validator.validateBytes(await file(def.name), { maxIssues: 100 })
      const errors = report.issues.messages.filter(m => m.severity === 0)
      assert.deepEqual(errors, [], `${def.name}: ${JSON.stringify(errors)}`)
      assert.equal(report.issues.numErrors, 0, def.name)
    }
  })

  it('are VRM 1.0 with every required humanoid bone and a CC0 licence in the meta', async () => {
    for (const def of AVATARS) {
      const json = glbJson(await file(def.name))
      assert.ok(json.extensionsUsed?.includes('VRMC_vrm'), def.name)
      const vrm = json.extensions?.VRMC_vrm
      assert.ok(vrm != null, `${def.name} has VRMC_vrm`)
      assert.equal(vrm.specVersion, '1.0')
      for (const bone of REQUIRED_BONES) {
        const node = vrm.humanoid.humanBones[bone]?.node
        assert.ok(typeof node === 'number' && json.nodes[node] != null, `${def.name}: ${bone} maps to a node`)
      }
      const nodes = Object.values(vrm.humanoid.humanBones).map(b => b.node)
      assert.equal(new Set(nodes).size, nodes.length, 'no node is two bones')
      const meta = vrm.meta
      assert.equal(meta.name, def.title)
      assert.deepEqual(meta.authors, ['Peerverse'])
      assert.equal(meta.licenseUrl, VRM_LICENSE_URL)
      assert.equal(meta.otherLicenseUrl, CC0_URL)
      assert.equal(meta.avatarPermission, 'everyone')
      assert.equal(meta.commercialUsage, 'corporation')
      assert.equal(meta.allowRedistribution, true)
      assert.equal(meta.modification, 'allowModificationRedistribution')
      assert.equal(typeof meta.version, 'string')
    }
    const licence = await readFile(join(DIR, 'LICENSE.md'), 'utf8')
    assert.match(licence, /CC0-1\.0/)
    assert.ok(licence.includes(CC0_URL))
  })

  it('stay under the triangle and byte limits, and the limits refuse more', async () => {
    for (const def of AVATARS) {
      const bytes = await file(def.name)
      const tris = triangles(glbJson(bytes))
      assert.ok(tris > 1000 && tris <= MAX_AVATAR_TRIANGLES, `${def.name}: ${tris} triangles`)
      assert.ok(bytes.length <= MAX_AVATAR_BYTES, `${def.name}: ${bytes.length} bytes`)
      assert.equal((await stat(join(DIR, `${def.name}.vrm`))).size, bytes.length)
      checkAvatarLimits(def.name, bytes.length, tris)
    }
    assert.throws(() => checkAvatarLimits('big', 1000, MAX_AVATAR_TRIANGLES + 1), (e: Error) => e instanceof AvatarLimitError && e.name === 'AvatarLimitError')
    assert.throws(() => checkAvatarLimits('big', MAX_AVATAR_BYTES + 1, 1000), { name: 'AvatarLimitError' })
  })

  it('stand on y = 0, a person tall, facing +Z', async () => {
    for (const def of AVATARS) {
      const json = glbJson(await file(def.name))
      const pos = json.accessors[json.meshes[0].primitives[0].attributes.POSITION]
      const [min, max] = [pos.min ?? [], pos.max ?? []]
      assert.ok(Math.abs(min[1]) < 0.005, `${def.name}: soles at ${min[1]}`)
      assert.ok(max[1] >= 1.6 && max[1] <= 1.85, `${def.name}: ${max[1]} m tall`)
      // T-pose: arm span about the height; the face (nose, shoes) reaches further forward than back.
      assert.ok(max[0] - min[0] > 0.85 * max[1], `${def.name}: arms out`)
      assert.ok(max[2] > -min[2], `${def.name}: faces +Z`)
    }
  })

  it('load with three GLTFLoader and the VRM plugin in Node', async () => {
    for (const def of AVATARS) {
      const bytes = await file(def.name)
      const loader = new GLTFLoader()
      loader.register(parser => new VRMLoaderPlugin(parser))
      const gltf = await loader.parseAsync(bytes.slice().buffer, '')
      const vrm = gltf.userData.vrm as VRM | undefined
      assert.ok(vrm != null, `${def.name} is a VRM`)
      assert.equal(vrm.meta.metaVersion, '1')
      assert.equal(vrm.meta.name, def.title)
      for (const bone of REQUIRED_BONES) assert.ok(vrm.humanoid.getRawBoneNode(bone as 'hips') != null, `${def.name}: ${bone}`)
      const expressions = vrm.expressionManager?.expressions.map((e: { expressionName: string }) => e.expressionName) ?? []
      for (const name of ['blink', 'blinkLeft', 'blinkRight', 'aa']) assert.ok(expressions.includes(name), `${def.name}: expression ${name}`)
      const skinned: SkinnedMesh[] = []
      vrm.scene.traverse((o: Object3D) => { if ((o as SkinnedMesh).isSkinnedMesh === true) skinned.push(o as SkinnedMesh) })
      assert.equal(skinned.length, 1, `${def.name}: one skinned mesh`)
      // Joints bend smoothly: some vertices are shared half and half by the bones on each side.
      const mesh = skinned[0]
      const bones = mesh.skeleton.bones.map(b => b.name)
      const index = mesh.geometry.getAttribute('skinIndex'); const weight = mesh.geometry.getAttribute('skinWeight')
      for (const [a, b] of [['leftUpperArm', 'leftLowerArm'], ['rightLowerArm', 'rightHand'], ['leftUpperLeg', 'leftLowerLeg'], ['rightLowerLeg', 'rightFoot'], ['hips', 'spine'], ['neck', 'head']]) {
        const [ia, ib] = [bones.indexOf(a), bones.indexOf(b)]
        assert.ok(ia >= 0 && ib >= 0, `${def.name}: bones ${a} and ${b} in the skin`)
        let shared = 0
        for (let v = 0; v < index.count; v++) {
          let wa = 0; let wb = 0
          for (let k = 0; k < 4; k++) {
            const j = index.getComponent(v, k); const w = weight.getComponent(v, k)
            if (j === ia) wa += w
            if (j === ib) wb += w
          }
          if (wa >= 0.3 && wb >= 0.3) shared++
        }
        assert.ok(shared >= 8, `${def.name}: ${shared} vertices blend ${a} and ${b}`)
      }
    }
  })

  it('are exactly what the generator makes (run twice, same bytes)', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'avatars')
    const made = await makeAll(dir)
    assert.deepEqual(made.map(m => m.name), AVATARS.map(a => a.name))
    for (const def of AVATARS) {
      const fresh = new Uint8Array(await readFile(join(dir, `${def.name}.vrm`)))
      assert.ok(Buffer.from(fresh).equals(Buffer.from(await file(def.name))), `${def.name}.vrm differs from the generator's output: run npm run make:avatars`)
    }
    const again = await makeAvatar(AVATARS[0])
    assert.ok(Buffer.from(again.bytes).equals(Buffer.from(await file(AVATARS[0].name))), 'a second run gives the same bytes')
  })
})

describe('web/src/avatars/defaults.ts', () => {
  it('lists every generated avatar with a URL to its file', async () => {
    assert.deepEqual(DEFAULT_AVATARS.map(a => a.name), AVATARS.map(a => a.name))
    for (const a of DEFAULT_AVATARS) {
      const path = fileURLToPath(a.url)
      assert.equal(path, join(DIR, `${a.name}.vrm`))
      assert.ok((await stat(path)).isFile())
      assert.equal(defaultAvatarUrl(a.name), a.url)
    }
    assert.equal(defaultAvatarUrl('nobody'), undefined)
  })

  it('gives a did the same avatar every time and spreads dids over all of them', () => {
    const random = seeded(18)
    const counts = new Map<string, number>()
    for (let i = 0; i < 400; i++) {
      const did = `did:key:z6Mk${Buffer.from(random.bytes(16)).toString('hex')}`
      const name = defaultAvatarFor(did)
      assert.equal(defaultAvatarFor(did), name)
      counts.set(name, (counts.get(name) ?? 0) + 1)
    }
    assert.deepEqual([...counts.keys()].sort(), DEFAULT_AVATARS.map(a => a.name).slice().sort())
    for (const [name, n] of counts) assert.ok(n >= 50, `${name} picked ${n} times of 400`)
    // Fixed vectors (FNV-1a of the did, mod 4), so the pick cannot change between versions unnoticed.
    assert.deepEqual(['did:key:a', 'did:key:b', 'did:key:c', 'did:key:d'].map(defaultAvatarFor), ['cy', 'dee', 'ada', 'bo'])
  })
})

describe('the peer serves a .vrm', () => {
  it('as model/gltf-binary, under the client CSP', async t => {
    const defer = cleanups(t)
    const root = await tempDir(defer, 'avatar-static')
    await mkdir(join(root, 'assets'))
    const bytes = await file('ada')
    await writeFile(join(root, 'assets', 'ada-abc123.vrm'), bytes)
    const server = createServer((req, res) => {
      serveStatic(root, req, res, new URL(req.url ?? '/', 'http://127.0.0.1')).catch(() => { res.writeHead(500); res.end() })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    defer(async () => { await new Promise(resolve => server.close(resolve)) })
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/assets/ada-abc123.vrm`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'model/gltf-binary')
    assert.match(res.headers.get('content-security-policy') ?? '', /connect-src 'self'/)
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(bytes)))
  })
})
