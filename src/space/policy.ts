/**
 * The owner's say over a space: the signed policy (editors, banned, muted, kicked, revoked edit
 * rights and, for a private space, the members) and the key envelopes that give each member of a
 * private space its group key. The owner changes the policy one change at a time; every peer takes
 * only a newer policy than it holds, drops whom it excludes, and learns from an envelope that
 * leaves it out that it was removed.
 */
import { isDid } from '../identity/did.ts'
import { randomBytes } from '../identity/hash.ts'
import { KeyedLock } from '../store/keyed-lock.ts'
import { createKeyEnvelope, GROUP_KEY_BYTES, openKeyEnvelope } from './crypto.ts'
import { InvalidSpaceRequestError, NotSpaceOwnerError } from './errors.ts'
import { publishFrame } from './frames.ts'
import type { Joined, SpaceCore } from './joined.ts'
import { createPolicy, DEFAULT_KICK_MS, initialPolicy, isExcluded, verifyPolicy, type Descriptor, type PolicyPayload } from './records.ts'
import { clientIdForDid, decodeStateVector } from './world.ts'

export { MAX_KEY_EPOCHS } from './keyring.ts'

export interface PolicyChange {
  addEditors?: string[]
  removeEditors?: string[]
  ban?: string[]
  unban?: string[]
  mute?: string[]
  unmute?: string[]
  kick?: string[]
  kickMs?: number
  addMembers?: string[]
  removeMembers?: string[]
}

export class SpacePolicy {
  private readonly core: SpaceCore
  /** Called for each member a new policy excludes. */
  private readonly onExcluded: (j: Joined, did: string) => void
  private readonly locks = new KeyedLock()

  constructor (core: SpaceCore, onExcluded: (j: Joined, did: string) => void) {
    this.core = core
    this.onExcluded = onExcluded
  }

  /** For a new private space: the first policy (members: the owner) and the first key, stored. */
  async founding (d: Descriptor): Promise<void> {
    const policy = await createPolicy(this.core.key, d, { ...initialPolicy(d), seq: 1 })
    await this.core.store.put('p', d.id, policy.bytes, true)
    await this.storeEnvelope(d.id, 1, await this.makeEnvelope(d, 1, randomBytes(GROUP_KEY_BYTES), policy.members))
  }

  /** The policy held for a space (the initial one if none is stored). */
  async held (d: Descriptor): Promise<PolicyPayload> {
    const bytes = await this.core.store.get('p', d.id)
    return bytes == null ? initialPolicy(d) : verifyPolicy(bytes, d)
  }

  /** Loads the stored key envelopes of a space we open. */
  async loadKeys (j: Joined, max: number): Promise<void> {
    for (const [, env] of (await this.core.store.envelopes(j.d.id)).slice(-max)) this.accept(j, env)
  }

  /** Changes the policy (owner only): editors, moderation, members of a private space. */
  async set (j: Joined, change: PolicyChange): Promise<PolicyPayload> {
    if (j.d.owner !== this.core.did) throw new NotSpaceOwnerError('only the owner changes a space\'s policy')
    // One change at a time per space: two at once would sign the same seq.
    return await this.locks.run(`policy/${j.d.id}`, async () => await this.change(j, change))
  }

  private async change (j: Joined, change: PolicyChange): Promise<PolicyPayload> {
    const id = j.d.id
    for (const list of Object.values(change)) {
      if (Array.isArray(list)) for (const did of list) if (!isDid(did)) throw new InvalidSpaceRequestError(`not a did:key: ${String(did)}`)
    }
    const p = j.policy
    const edit = (list: string[], add?: string[], remove?: string[]): string[] => {
      const s = new Set(list)
      for (const d of add ?? []) if (d !== j.d.owner) s.add(d)
      for (const d of remove ?? []) s.delete(d)
      return [...s]
    }
    const now = Date.now()
    const kicked: Record<string, number> = {}
    for (const [did, until] of Object.entries(p.kicked)) if (until > now) kicked[did] = until
    for (const did of change.kick ?? []) if (did !== j.d.owner) kicked[did] = now + (change.kickMs ?? DEFAULT_KICK_MS)
    // Whoever loses rights keeps the edits made before: up to the clock we hold of theirs.
    const revoked = { ...p.revoked }
    const held = decodeStateVector(j.edits.world.stateVector())
    for (const did of [...(change.removeEditors ?? []), ...(change.ban ?? []), ...(change.kick ?? []), ...(change.removeMembers ?? [])]) {
      const clock = held.get(clientIdForDid(did)) ?? 0
      if (clock > 0 && did !== j.d.owner) revoked[did] = Math.max(revoked[did] ?? 0, clock)
    }
    const next: PolicyPayload = {
      space: id,
      seq: p.seq + 1,
      editors: edit(p.editors, change.addEditors, change.removeEditors),
      banned: edit(p.banned, change.ban, change.unban),
      muted: edit(p.muted, change.mute, change.unmute),
      kicked,
      revoked,
      members: j.d.private ? edit(p.members, change.addMembers, [...(change.removeMembers ?? []), ...(change.ban ?? [])]) : []
    }
    const policy = await createPolicy(this.core.key, j.d, next)
    // The new key envelope is made before anything is stored, so a failure leaves nothing half done.
    let envelope: { epoch: number, bytes: Uint8Array } | undefined
    if (j.d.private) {
      const removed = p.members.filter(m => !policy.members.includes(m))
      const added = policy.members.filter(m => !p.members.includes(m))
      if (removed.length > 0 || added.length > 0) {
        // Removing a member rotates the key; adding one reseals the current key to everyone.
        const epoch = removed.length > 0 ? j.keys.epoch + 1 : j.keys.epoch
        const key = removed.length > 0 ? randomBytes(GROUP_KEY_BYTES) : j.keys.keys.get(j.keys.epoch) ?? randomBytes(GROUP_KEY_BYTES)
        envelope = { epoch, bytes: await this.makeEnvelope(j.d, epoch, key, policy.members) }
      }
    }
    await this.core.store.put('p', id, policy.bytes, true)
    if (envelope != null) await this.storeEnvelope(id, envelope.epoch, envelope.bytes)
    this.apply(j, policy)
    if (envelope != null) this.accept(j, envelope.bytes)
    await publishFrame(this.core.gossip, j, { t: 'policy', d: policy.bytes }, true)
    if (envelope != null) await publishFrame(this.core.gossip, j, { t: 'keys', d: envelope.bytes }, true)
    return next
  }

  private async makeEnvelope (d: Descriptor, epoch: number, key: Uint8Array, members: string[]): Promise<Uint8Array> {
    return (await createKeyEnvelope(this.core.key, d.id, epoch, key, members)).bytes
  }

  private async storeEnvelope (id: string, epoch: number, bytes: Uint8Array): Promise<void> {
    await this.core.store.put('k', `${id}/${epoch}`, bytes, true)
  }

  /** Opens an envelope sealed to us into the space's key ring; one that leaves us out means we were removed. */
  accept (j: Joined, bytes: Uint8Array): boolean {
    const verdict = j.keys.accept(this.core.key, this.core.did, j.d.owner, bytes)
    if (verdict === 'left-out') j.removed = true
    return verdict === 'key'
  }

  /** A key envelope from gossip or a peer: stored if it is sealed to us, and taken into the ring if we are in the space. */
  async takeEnvelope (d: Descriptor, bytes: Uint8Array): Promise<void> {
    const j = this.core.joined.get(d.id)
    let epoch: number
    try {
      ({ epoch } = openKeyEnvelope(this.core.key, this.core.did, bytes, d.owner, d.id))
    } catch (err) {
      if ((err as Error).name === 'NotAMemberError' && j != null) j.removed = true
      return
    }
    await this.storeEnvelope(d.id, epoch, bytes)
    if (j != null) this.accept(j, bytes)
  }

  /** A policy from gossip or a peer: stored and applied when newer than the one we hold. */
  async takePolicy (d: Descriptor, bytes: Uint8Array): Promise<void> {
    const policy = verifyPolicy(bytes, d)
    const j = this.core.joined.get(d.id)
    const held = await this.core.store.get('p', d.id)
    const current = j?.policy.seq ?? (held == null ? 0 : verifyPolicy(held, d).seq)
    if (policy.seq <= current) return
    await this.core.store.put('p', d.id, bytes)
    if (j != null) this.apply(j, policy)
  }

  private apply (j: Joined, policy: PolicyPayload): void {
    j.policy = policy
    const now = Date.now()
    for (const did of [...j.presence.members.keys()]) {
      if (isExcluded(j.d, policy, did, now)) this.onExcluded(j, did)
    }
    if (isExcluded(j.d, policy, this.core.did, now)) j.removed = true
    const { space: _space, ...rest } = policy
    this.core.emit('space:policy', { space: j.d.id, policy: rest })
  }
}
