/**
 * One loaded avatar model (a template, shared by everyone who wears it) and its instances (one
 * per member drawn in detail). Instances are SkeletonUtils clones: geometry, materials and
 * textures stay the template's; each clone has its own bones. A VRM clone gets its own humanoid
 * (three-vrm's VRMHumanoid over the cloned bones, with its own normalized rig) so each member
 * is posed apart, and is updated with `vrm.update(dt)` each frame. A plain glTF plays its clips
 * named like idle and walk, or bobs when it has none; it is scaled to a person's height when its
 * size is far off. Models face +z; members face -z, so the body is turned half round.
 */
import { AnimationMixer, Box3, Group, type AnimationAction, type AnimationClip, type Object3D, type SkinnedMesh } from 'three'
import { clone as cloneSkinned } from 'three/addons/utils/SkeletonUtils.js'
import { VRMCore, VRMHumanoid, VRMUtils, type VRM, type VRMHumanBones } from '@pixiv/three-vrm'
import { Gait, poseHumanoid } from './animate.ts'
import type { AvatarFile } from './load.ts'

/** Height a plain glTF avatar is scaled to when its own is far off (metres). */
export const PERSON_HEIGHT_M = 1.7
/** A plain glTF avatar whose height (metres) is outside this range is scaled to PERSON_HEIGHT_M. */
export const PLAIN_HEIGHT_RANGE: readonly [number, number] = [0.8, 2.6]

export class AvatarTemplate {
  readonly kind: 'vrm' | 'gltf'
  readonly scene: Object3D
  readonly vrm?: VRM
  readonly animations: AnimationClip[]
  /** Scale and lift (metres) that stand the model on the ground at a person's height. */
  readonly scale: number
  readonly lift: number
  private readonly file: AvatarFile

  constructor (file: AvatarFile) {
    this.file = file
    const gltf = file.gltf
    this.scene = gltf.scene
    this.animations = gltf.animations ?? []
    const vrm = gltf.userData?.vrm as VRM | undefined
    if (vrm != null) {
      this.kind = 'vrm'
      this.vrm = vrm
      VRMUtils.removeUnnecessaryVertices(gltf.scene)
      VRMUtils.combineSkeletons(gltf.scene)
      VRMUtils.rotateVRM0(vrm)
      this.scale = 1
      this.lift = 0
    } else {
      this.kind = 'gltf'
      const box = new Box3().setFromObject(gltf.scene)
      const height = box.isEmpty() ? PERSON_HEIGHT_M : box.max.y - box.min.y
      const [lo, hi] = PLAIN_HEIGHT_RANGE
      this.scale = height > 0 && (height < lo || height > hi) ? PERSON_HEIGHT_M / height : 1
      this.lift = box.isEmpty() ? 0 : -box.min.y * this.scale
    }
    // Models without normals would draw black under our lights.
    gltf.scene.traverse(n => {
      const g = (n as SkinnedMesh).geometry
      if (g?.attributes?.position != null && g.attributes.normal == null) g.computeVertexNormals()
    })
  }

  dispose (): void {
    VRMUtils.deepDispose(this.scene)
    this.file.dispose?.()
  }
}

/** One member's body: placed by the crowd at the member's pose (root), animated by update. */
export class AvatarInstance {
  readonly root = new Group()
  readonly gait = new Gait()
  private readonly body = new Group()
  private readonly model: Object3D
  private readonly template: AvatarTemplate
  private readonly vrm?: VRMCore
  private readonly mixer?: AnimationMixer
  private readonly idle?: AnimationAction
  private readonly walk?: AnimationAction
  private playing: 'idle' | 'walk' | undefined

  constructor (t: AvatarTemplate) {
    this.template = t
    this.model = cloneSkinned(t.scene)
    if (t.vrm != null) this.vrm = cloneHumanoid(t.vrm, t.scene, this.model)
    else if (t.animations.length > 0) {
      const idle = t.animations.find(c => /idle|stand|breath/i.test(c.name))
      const walk = t.animations.find(c => /walk|run|jog/i.test(c.name))
      if (idle != null || walk != null) {
        this.mixer = new AnimationMixer(this.model)
        if (idle != null) this.idle = this.mixer.clipAction(idle)
        if (walk != null) this.walk = this.mixer.clipAction(walk)
      }
    }
    this.body.add(this.model)
    this.body.rotation.y = Math.PI
    this.body.scale.setScalar(t.scale)
    this.body.position.y = t.lift
    this.root.add(this.body)
  }

  /** Advances the animation by dt seconds at the member's speed (m/s); returns the gait. */
  update (dt: number, speed: number): 'idle' | 'walk' {
    const g = this.gait
    g.step(dt, speed)
    if (this.vrm != null) {
      const h = this.vrm.humanoid
      poseHumanoid(name => h.getNormalizedBoneNode(name as Parameters<typeof h.getNormalizedBoneNode>[0]), g)
      this.vrm.update(dt)
      this.body.position.y = this.template.lift + g.bob()
    } else if (this.mixer != null) {
      if (this.playing !== g.state) {
        const from = this.playing === 'walk' ? this.walk : this.playing === 'idle' ? this.idle : undefined
        const to = g.state === 'walk' ? this.walk : this.idle
        from?.fadeOut(0.25)
        to?.reset().fadeIn(0.25).play()
        this.playing = g.state
      }
      if (this.walk != null) this.walk.timeScale = Math.min(2, Math.max(0.5, speed / 1.4))
      this.mixer.update(dt)
      if (this.walk == null || (this.idle == null && g.state === 'idle')) this.body.position.y = this.template.lift + g.bob()
    } else {
      this.body.position.y = this.template.lift + g.bob()
    }
    return g.state
  }

  dispose (): void {
    this.root.removeFromParent()
    this.mixer?.stopAllAction()
    this.mixer?.uncacheRoot(this.model)
    // Geometry, materials and textures are the template's; the cloned skeletons are ours.
    this.model.traverse(n => { (n as SkinnedMesh).skeleton?.dispose() })
  }
}

/**
 * A humanoid of its own for a clone of a VRM's scene: the clone's bones found by walking the two
 * trees together, the template's normalized rig left out of the clone, a new rig made over the
 * clone's bones at rest (with the root unturned, as the loader makes it).
 */
function cloneHumanoid (vrm: VRM, source: Object3D, clone: Object3D): VRMCore {
  const map = new Map<Object3D, Object3D>()
  const walk = (a: Object3D, b: Object3D): void => {
    map.set(a, b)
    for (let i = 0; i < a.children.length && i < b.children.length; i++) walk(a.children[i], b.children[i])
  }
  walk(source, clone)
  map.get(vrm.humanoid.normalizedHumanBonesRoot)?.removeFromParent()
  const bones: Record<string, { node: Object3D }> = {}
  for (const [name, bone] of Object.entries(vrm.humanoid.rawHumanBones)) {
    const node = bone?.node == null ? undefined : map.get(bone.node)
    if (node != null) bones[name] = { node }
  }
  const turned = clone.quaternion.clone()
  clone.quaternion.identity()
  clone.updateMatrixWorld(true)
  const humanoid = new VRMHumanoid(bones as unknown as VRMHumanBones)
  clone.quaternion.copy(turned)
  clone.add(humanoid.normalizedHumanBonesRoot)
  clone.updateMatrixWorld(true)
  return new VRMCore({ scene: clone as Group, meta: vrm.meta, humanoid })
}

