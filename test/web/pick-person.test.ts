/**
 * The avatar under a click (web/src/pick-person.ts): a hit inside an avatar's box, a miss beside
 * it and behind the camera, and the nearer of two avatars in a line.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PerspectiveCamera } from 'three'
import { AVATAR_PICK_HALF_WIDTH_M, AVATAR_PICK_HEIGHT_M, avatarAt } from '../../web/src/pick-person.ts'

/** A camera at eye height at the origin, looking down -z. */
function camera (): PerspectiveCamera {
  const c = new PerspectiveCamera(70, 1, 0.1, 2000)
  c.position.set(0, 1.6, 0)
  c.updateMatrixWorld()
  return c
}

describe('avatarAt', () => {
  it('finds the avatar under the point, and none beside it', () => {
    const c = camera()
    const avatars = [{ did: 'did:key:a', position: [0, 0, -5] as [number, number, number] }]
    assert.equal(avatarAt(c, avatars, 0, -0.05), 'did:key:a')
    // Just past the box's side at 5 m: half width 0.4 m is about 0.11 of the half view at 70°.
    const past = (AVATAR_PICK_HALF_WIDTH_M * 1.3) / (5 * Math.tan((70 / 2) * Math.PI / 180))
    assert.equal(avatarAt(c, avatars, past, -0.05), undefined)
    // Above the head.
    const above = (AVATAR_PICK_HEIGHT_M - 1.6 + 0.3) / (5 * Math.tan((70 / 2) * Math.PI / 180))
    assert.equal(avatarAt(c, avatars, 0, above), undefined)
  })

  it('ignores avatars behind the camera and picks the nearer of two', () => {
    const c = camera()
    assert.equal(avatarAt(c, [{ did: 'did:key:behind', position: [0, 0, 5] }], 0, -0.05), undefined)
    const two = [{ did: 'did:key:far', position: [0, 0, -9] as [number, number, number] }, { did: 'did:key:near', position: [0, 0, -3] as [number, number, number] }]
    assert.equal(avatarAt(c, two, 0, -0.05), 'did:key:near')
    assert.equal(avatarAt(c, two.slice(0, 1), 0, -0.05), 'did:key:far')
  })
})
