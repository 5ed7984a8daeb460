/**
 * Which member's avatar is under a point of the view: each avatar is taken as an upright box
 * (AVATAR_PICK_HALF_WIDTH_M either side of where it stands, AVATAR_PICK_HEIGHT_M tall) projected
 * through the camera, and the nearest one whose box holds the point wins. It needs only the
 * positions the view draws avatars at, not their meshes, so it holds whatever an avatar looks like.
 */
import { Vector3, type Camera } from 'three'

/** Half the width of the box a click on an avatar must fall in, in metres. */
export const AVATAR_PICK_HALF_WIDTH_M = 0.4
/** Height of that box above where the avatar stands, in metres. */
export const AVATAR_PICK_HEIGHT_M = 1.8

type Vec3 = [number, number, number]

/** The did of the nearest avatar under (ndcX, ndcY) in normalised device coordinates, if any. */
export function avatarAt (camera: Camera, avatars: Array<{ did: string, position: Vec3 }>, ndcX: number, ndcY: number): string | undefined {
  camera.updateMatrixWorld()
  const right = new Vector3(1, 0, 0).applyQuaternion(camera.quaternion).setY(0)
  if (right.lengthSq() < 1e-9) right.set(1, 0, 0)
  right.normalize().multiplyScalar(AVATAR_PICK_HALF_WIDTH_M)
  let best: { did: string, depth: number } | undefined
  for (const a of avatars) {
    const foot = new Vector3(...a.position)
    const depth = foot.clone().applyMatrix4(camera.matrixWorldInverse).z
    if (depth >= -0.05) continue // behind the camera (it looks down -z)
    const corners = [
      foot.clone().sub(right), foot.clone().add(right),
      foot.clone().sub(right).setY(foot.y + AVATAR_PICK_HEIGHT_M), foot.clone().add(right).setY(foot.y + AVATAR_PICK_HEIGHT_M)
    ].map(p => p.project(camera))
    const xs = corners.map(p => p.x)
    const ys = corners.map(p => p.y)
    const inside = ndcX >= Math.min(...xs) && ndcX <= Math.max(...xs) && ndcY >= Math.min(...ys) && ndcY <= Math.max(...ys)
    if (inside && (best == null || -depth < best.depth)) best = { did: a.did, depth: -depth }
  }
  return best?.did
}

/** Where the middle of an avatar standing at `position` shows in a view of width x height CSS pixels; null when off the view. */
export function avatarScreenPoint (camera: Camera, position: Vec3, width: number, height: number): { x: number, y: number } | null {
  camera.updateMatrixWorld()
  const p = new Vector3(position[0], position[1] + AVATAR_PICK_HEIGHT_M / 2, position[2])
  if (p.clone().applyMatrix4(camera.matrixWorldInverse).z >= -0.05) return null
  p.project(camera)
  if (Math.abs(p.x) > 1 || Math.abs(p.y) > 1) return null
  return { x: (p.x + 1) / 2 * width, y: (1 - p.y) / 2 * height }
}
