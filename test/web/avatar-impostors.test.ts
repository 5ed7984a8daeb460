/**
 * Impostors (web/src/impostors.ts), one module with a stand-in renderer (no WebGL in Node): a
 * model's picture is made once and shared by everyone wearing it; at most MAX_SNAPSHOTS_PER_FRAME
 * pictures are made in one frame; past MAX_IMPOSTOR_MODELS the least recently drawn is freed; a
 * model whose body cannot be made is not tried again; a member facing the camera shows the front
 * half of the picture and one walking away the back.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { BoxGeometry, Color, Group, type InstancedBufferAttribute, InstancedMesh, Mesh, MeshBasicMaterial, Quaternion, Scene, Vector3, type WebGLRenderer } from 'three'
import { Impostors, MAX_IMPOSTOR_MODELS, MAX_SNAPSHOTS_PER_FRAME } from '../../web/src/impostors.ts'

/** The calls Impostors makes on a renderer, counted. */
function fakeRenderer (): { renderer: WebGLRenderer, renders: () => number } {
  let renders = 0
  const r = {
    getRenderTarget: () => null,
    setRenderTarget: () => {},
    getClearColor: (c: Color) => c.set(0xffffff),
    getClearAlpha: () => 1,
    setClearColor: () => {},
    clear: () => {},
    render: () => { renders++ }
  }
  return { renderer: r as unknown as WebGLRenderer, renders: () => renders }
}

/** A body of a model: a 0.5 x 1.7 x 0.3 m box standing on the ground. */
function body (): { root: Group, update: () => void } {
  const root = new Group()
  root.add(new Mesh(new BoxGeometry(0.5, 1.7, 0.3).translate(0, 0.85, 0), new MeshBasicMaterial()))
  return { root, update: () => {} }
}

function quads (scene: Scene): InstancedMesh[] {
  return scene.children.filter((o): o is InstancedMesh => o instanceof InstancedMesh)
}

describe('impostors', () => {
  it('one picture per model, shared; at most MAX_SNAPSHOTS_PER_FRAME made in a frame', () => {
    const scene = new Scene()
    const { renderer, renders } = fakeRenderer()
    const imp = new Impostors(scene, renderer)
    let made = 0
    let released = 0
    const make = (): ReturnType<typeof body> => { made++; return body() }
    const release = (): void => { released++ }
    const keys = Array.from({ length: MAX_SNAPSHOTS_PER_FRAME + 1 }, (_, i) => `m${i}`)
    const ok = keys.map(k => imp.snapshot(k, make, release))
    assert.deepEqual(ok, keys.map((_, i) => i < MAX_SNAPSHOTS_PER_FRAME), 'the last waits for the next frame')
    assert.equal(made, MAX_SNAPSHOTS_PER_FRAME)
    assert.equal(released, made, 'every body made for a picture is given back')
    assert.equal(renders(), 2 * MAX_SNAPSHOTS_PER_FRAME, 'front and back')
    imp.flush()
    assert.equal(imp.snapshot(keys.at(-1)!, make, release), true)
    // Asked again, a model with its picture costs nothing more.
    assert.equal(imp.snapshot('m0', make, release), true)
    assert.equal(made, MAX_SNAPSHOTS_PER_FRAME + 1)
    // Three members in m0: one draw (one instanced mesh) with three instances.
    for (let i = 0; i < 3; i++) imp.add('m0', new Vector3(i, 0, 0), new Quaternion(), new Vector3(0, 1.6, -10))
    imp.flush()
    assert.equal(imp.drawn, 3)
    assert.deepEqual(quads(scene).map(m => m.count).filter(c => c > 0), [3])
    imp.dispose()
  })

  it(`keeps at most MAX_IMPOSTOR_MODELS (${MAX_IMPOSTOR_MODELS}) pictures, freeing the least recently drawn`, () => {
    const scene = new Scene()
    const imp = new Impostors(scene, fakeRenderer().renderer)
    const release = (): void => {}
    for (let i = 0; i < MAX_IMPOSTOR_MODELS; i++) {
      assert.equal(imp.snapshot(`m${i}`, body, release), true)
      imp.flush()
    }
    // m0 is drawn now; m1 is the least recently drawn when one more comes.
    imp.add('m0', new Vector3(), new Quaternion(), new Vector3(0, 0, -5))
    imp.flush()
    assert.equal(imp.snapshot('extra', body, release), true)
    assert.equal(imp.size, MAX_IMPOSTOR_MODELS)
    assert.equal(imp.has('m0'), true)
    assert.equal(imp.has('m1'), false)
    assert.equal(imp.has('extra'), true)
    assert.equal(quads(scene).length, MAX_IMPOSTOR_MODELS, 'the freed picture\'s quads left the scene')
    imp.dispose()
  })

  it('a model whose body cannot be made gets no picture and is not tried again', () => {
    const imp = new Impostors(new Scene(), fakeRenderer().renderer)
    let tries = 0
    const none = (): undefined => { tries++; return undefined }
    assert.equal(imp.snapshot('bad', none, () => {}), false)
    imp.flush()
    assert.equal(imp.snapshot('bad', none, () => {}), false)
    assert.equal(tries, 1)
    assert.equal(imp.has('bad'), false)
    imp.dispose()
  })

  it('a member facing the camera shows the front, one walking away the back', () => {
    const scene = new Scene()
    const imp = new Impostors(scene, fakeRenderer().renderer)
    imp.snapshot('m', body, () => {})
    const eye = new Vector3(0, 1.6, 10)
    const towards = new Quaternion().setFromAxisAngle(new Vector3(0, 1, 0), Math.PI) // facing +z, to the eye
    const away = new Quaternion() // facing -z
    imp.add('m', new Vector3(0, 0, 0), towards, eye)
    imp.add('m', new Vector3(1, 0, 0), away, eye)
    imp.flush()
    const mesh = quads(scene).find(m => m.count === 2)!
    const side = mesh.geometry.getAttribute('impostorSide') as InstancedBufferAttribute
    assert.deepEqual([side.getX(0), side.getX(1)], [0, 1])
    imp.dispose()
  })
})
