/**
 * World edits in a space: ours (place, move, remove an object) and others' (signed world records
 * from gossip or a sync answer), judged by the world rules (world.ts) against the owner's policy
 * and the ledger's parcels, kept on disk in acceptance order and replayed when the space opens.
 * Records that wait for earlier ones are held (bounded) until those arrive.
 */
import * as Y from 'yjs'
import { logger } from '@libp2p/logger'
import { randomBytes, base64url } from '../identity/hash.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { ExcludedError, SpaceRateLimitError } from './errors.ts'
import { openStored, publishFrame, sealStored } from './frames.ts'
import { checkActive, type Joined, type SpaceCore } from './joined.ts'
export { MAX_HELD_WORLD_RECORDS, WorldLog, type WorldRecordRange } from './joined.ts'
import { createWorldRecord, isExcluded, verifyWorldRecord } from './records.ts'
import {
  decodeWorldUpdate, EditNotAllowedError, moveObject, placeObject, removeObject, World,
  type AppliedUpdate, type EditContext, type UpdateRange, type WorldObject, type WorldObjectValue
} from './world.ts'

const log = logger('peerverse:space')

/** World updates per author per second, and burst (what every receiver takes). */
export const WORLD_UPDATES_PER_SECOND = 20
export const WORLD_UPDATE_BURST = 100
/** Of WORLD_UPDATE_BURST, the tokens our own peer keeps in hand for delays on the way. */
export const WORLD_SEND_MARGIN = 10
/** World updates per signing peer per second (any authors), and burst. */
export const WORLD_UPDATES_PER_PEER_PER_SECOND = 40
export const WORLD_UPDATE_PEER_BURST = 200


export class SpaceEdits {
  private readonly core: SpaceCore
  private readonly buckets = new TokenBuckets(WORLD_UPDATES_PER_SECOND, WORLD_UPDATE_BURST)
  private readonly sendBuckets = new TokenBuckets(WORLD_UPDATES_PER_SECOND, WORLD_UPDATE_BURST - WORLD_SEND_MARGIN)
  private readonly peerBuckets = new TokenBuckets(WORLD_UPDATES_PER_PEER_PER_SECOND, WORLD_UPDATE_PEER_BURST)

  constructor (core: SpaceCore) {
    this.core = core
  }

  /** Replays the records we accepted before (opened with the group key in a private space): they passed the rules then, so their authors' rights are taken as given. */
  async replay (j: Joined): Promise<void> {
    const id = j.d.id
    for await (const stored of this.core.store.world(id)) {
      try {
        const bytes = openStored(j, stored)
        const rec = verifyWorldRecord(bytes, id)
        j.edits.accepted(j.edits.world.apply(rec.author, rec.update, { ...this.editContext(j), owner: rec.author }), bytes)
      } catch (err) {
        log.error('stored world record of %s failed to replay: %s', id, (err as Error).message)
      }
    }
  }

  objects (j: Joined): Array<WorldObject & { id: string }> {
    return [...j.edits.world.objects()].map(([oid, o]) => ({ ...o, id: oid }))
  }

  /** The whole world document as one Yjs update (for tools and tests; peers sync signed records instead). */
  state (j: Joined): Uint8Array {
    return Y.encodeStateAsUpdate(j.edits.world.doc)
  }

  /** Places (or replaces) an object; returns its id. */
  async place (j: Joined, value: WorldObjectValue, objectId?: string): Promise<string> {
    const oid = objectId ?? base64url(randomBytes(9))
    await this.edit(j, placeObject(j.edits.world, this.core.did, oid, value))
    return oid
  }

  async move (j: Joined, objectId: string, transform: Partial<Pick<WorldObjectValue, 'position' | 'rotation' | 'scale'>>): Promise<void> {
    await this.edit(j, moveObject(j.edits.world, this.core.did, objectId, transform))
  }

  async remove (j: Joined, objectId: string): Promise<void> {
    await this.edit(j, removeObject(j.edits.world, this.core.did, objectId))
  }

  /** Our edit: past the receivers' per-author limit (less a margin) it is refused with SpaceRateLimitError and not sent. */
  private async edit (j: Joined, update: Uint8Array): Promise<void> {
    checkActive(this.core, j)
    const id = j.d.id
    if (!this.sendBuckets.take(id)) {
      throw new SpaceRateLimitError(`not sent: receivers take ${WORLD_UPDATE_BURST - WORLD_SEND_MARGIN} world edits at once, then ${WORLD_UPDATES_PER_SECOND} a second (try again in ${this.sendBuckets.wait(id)} ms)`)
    }
    const rec = await createWorldRecord(this.core.key, id, update)
    const applied = j.edits.world.apply(this.core.did, update, this.editContext(j))
    await this.core.store.addWorld(id, sealStored(j, rec.bytes), true)
    j.edits.accepted(applied, rec.bytes)
    this.core.emit('space:world', { space: j.d.id, author: this.core.did, objects: applied.objects })
    await publishFrame(this.core.gossip, j, { t: 'world', d: rec.bytes })
  }

  private ownsParcelIn (space: string, did: string): boolean {
    for (const p of this.core.parcels(space)) if (p.owner === did) return true
    return false
  }

  /** The rights world updates are judged by; `formerEditor` is an author whose rights were revoked after the update. */
  editContext (j: Joined, formerEditor?: string): EditContext {
    const space = j.d.id
    const parcels = this.core.parcels
    const editors = new Set(j.policy.editors)
    if (formerEditor != null) editors.add(formerEditor)
    return {
      owner: j.d.owner,
      editors,
      bounds: { minX: 0, maxX: j.d.grid.width, minZ: 0, maxZ: j.d.grid.depth },
      parcelOwnerAt: (x: number, z: number) => {
        for (const p of parcels(space)) {
          if (x >= p.x && x < p.x + p.w && z >= p.y && z < p.y + p.h) return p.owner
        }
        return undefined
      }
    }
  }

  /** A world record from gossip (`from`: the peer that signed the gossip message) or a sync answer (`synced`: not rate-limited). */
  async take (j: Joined, bytes: Uint8Array, synced: boolean, now: number, from?: string): Promise<void> {
    const id = j.d.id
    const rec = verifyWorldRecord(bytes, id)
    if (!synced && from != null && !this.peerBuckets.take(`${id}/${from}`, 1, now)) throw new SpaceRateLimitError(`peer ${from} signs more than ${WORLD_UPDATES_PER_PEER_PER_SECOND} world updates a second`)
    // An update made before the owner took its author's rights away is judged as made then.
    const before = (j.policy.revoked[rec.author] ?? 0) >= decodeWorldUpdate(rec.update).clockEnd
    if (!before && isExcluded(j.d, j.policy, rec.author, now)) throw new ExcludedError(`${rec.author} is kept out of ${id}`)
    if (!synced && !this.buckets.take(`${id}/${rec.author}`, 1, now)) throw new SpaceRateLimitError(`${rec.author} sends more than ${WORLD_UPDATES_PER_SECOND} world updates a second`)
    const ctx = this.editContext(j, before ? rec.author : undefined)
    // Someone who may edit nothing here gets no room in the queue of updates awaiting others.
    if (rec.author !== ctx.owner && !ctx.editors.has(rec.author) && !this.ownsParcelIn(id, rec.author)) {
      throw new EditNotAllowedError('', `${rec.author} is neither owner nor editor of ${id} and owns no parcel in it`)
    }
    const log = j.edits
    const result = log.world.offer(rec.id, rec.author, rec.update, ctx)
    const byId = new Map([[rec.id, rec.bytes]])
    for (const [heldId, heldBytes] of log.held) byId.set(heldId, heldBytes)
    for (const a of result.accepted) {
      const recBytes = byId.get(a.id)
      log.held.delete(a.id)
      if (recBytes == null) continue
      await this.core.store.addWorld(id, sealStored(j, recBytes))
      log.accepted(a.applied, recBytes)
      this.core.emit('space:world', { space: id, author: verifyWorldRecord(recBytes, id).author, objects: a.applied.objects })
    }
    for (const dropped of [...result.dropped, ...result.rejected.map(r => r.id)]) log.held.delete(dropped)
    if (result.held.includes(rec.id)) log.hold(rec.id, rec.bytes)
    const mine = result.rejected.find(r => r.id === rec.id)
    if (mine != null) throw mine.error
  }
}
