/**
 * The relayed bounds of one download (src/content/swarm-relayed.ts) on their own, with the
 * connections and hole punching faked: what a relayed session may carry (the bound, the bound + 1
 * byte, the connection's own byte limit), when the download waits for a direct path, and the
 * DirectPath contract (false: fail at once with DirectPathPendingError; true: the session reopens).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { Stream } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { RelayedBounds, type RelayedDownload } from '../../src/content/swarm-relayed.ts'
import { Session, type DirectPath } from '../../src/content/swarm-session.ts'
import { RELAYED_CONTENT_MAX_BYTES } from '../../src/content/swarm-limits.ts'
import { CHUNK_SIZE } from '../../src/content/unixfs.ts'
import type { Leaf } from '../../src/content/reader.ts'
import type { RemotePeer } from '../../src/net/ports.ts'

const PEER = '12D3KooWRelayedHolder'

async function leavesOf (size: number): Promise<Leaf[]> {
  const out: Leaf[] = []
  for (let offset = 0, i = 0; offset < size; offset += CHUNK_SIZE, i++) {
    const cid = CID.createV1(raw.code, await sha256.digest(new Uint8Array([i])))
    out.push({ cid, offset, size: Math.min(CHUNK_SIZE, size - offset) })
  }
  return out
}

function setup (leaves: Leaf[], conns: RemotePeer[], directPath?: DirectPath): { bounds: RelayedBounds, session: Session, reopened: Session[], conns: RemotePeer[] } {
  const session = new Session(PEER, {} as unknown as Stream, 'complete', 0, new Uint8Array())
  const sessions = new Map([[PEER, session]])
  const reopened: Session[] = []
  const d: RelayedDownload = {
    root: leaves[0].cid,
    leaves: () => leaves,
    missing: () => leaves.length,
    sessions: () => sessions.values(),
    reopen: s => { reopened.push(s); sessions.delete(s.peer) }
  }
  const bounds = new RelayedBounds(d, { protocols: { dial: async () => { throw new Error('no dial here') }, connections: () => conns }, directPath, wake: () => {} })
  bounds.classify(session)
  return { bounds, session, reopened, conns }
}

const relayed: RemotePeer = { peer: PEER, address: `/ip4/127.0.0.1/tcp/1/p2p/R/p2p-circuit/p2p/${PEER}`, limited: true }
const direct: RemotePeer = { peer: PEER, address: `/ip4/127.0.0.1/tcp/2/p2p/${PEER}`, limited: false }

describe('relayed bounds of a download', () => {
  it('a file of exactly RELAYED_CONTENT_MAX_BYTES comes through a relay, and not a byte more', async () => {
    const leaves = await leavesOf(RELAYED_CONTENT_MAX_BYTES)
    const { bounds, session } = setup(leaves, [relayed])
    assert.equal(session.limited, true)
    for (const leaf of leaves) {
      assert.equal(bounds.takeLeaf(session, leaf.size), true)
      session.inflight.add(leaf.cid.toString())
    }
    assert.equal(bounds.leafBytes, RELAYED_CONTENT_MAX_BYTES)
    // A leaf asked again (a stall) counts again: the bound holds per download.
    assert.equal(bounds.takeLeaf(session, 1), false)
    assert.equal(bounds.waiting(), 0, 'a file within the bound with its leaves in flight does not wait')
    // Its requests lost with the bound spent: only a direct path can bring the rest.
    session.inflight.clear()
    assert.equal(bounds.waiting(), 1)
  })

  it('a file one byte past the bound takes nothing through the relay and waits for a direct path', async () => {
    const leaves = await leavesOf(RELAYED_CONTENT_MAX_BYTES + 1)
    const { bounds, session } = setup(leaves, [relayed])
    assert.equal(bounds.takeLeaf(session, leaves[0].size), false)
    assert.equal(bounds.leafBytes, 0)
    bounds.check()
    assert.equal(bounds.waiting(), 1)
    assert.ok(bounds.waitingSince > 0)
    assert.equal(bounds.failure(Date.now(), 60_000), undefined, 'within its deadline the wait goes on')
    const late = bounds.failure(Date.now() - 61_000, 60_000)
    assert.equal(late?.name, 'DirectPathPendingError')
    assert.match(late?.message ?? '', new RegExp(`${PEER}.*reachable only through relays`))
  })

  it("never past the relayed connection's own byte limit", async () => {
    const leaves = await leavesOf(2 * CHUNK_SIZE)
    const { bounds, session } = setup(leaves, [{ ...relayed, limitBytes: CHUNK_SIZE }])
    assert.equal(session.limitBytes, CHUNK_SIZE)
    assert.equal(bounds.takeLeaf(session, CHUNK_SIZE), false, 'the file is past what this circuit carries')
    assert.equal(bounds.waiting(), 1)
  })

  it('a session over a direct connection is not bounded', async () => {
    const leaves = await leavesOf(RELAYED_CONTENT_MAX_BYTES + 1)
    const { bounds, session } = setup(leaves, [relayed, direct])
    assert.equal(session.limited, false)
    for (const leaf of leaves) assert.equal(bounds.takeLeaf(session, leaf.size), true)
    assert.equal(bounds.waiting(), 0)
  })

  it('fails at once when hole punching says no direct connection can be made', async () => {
    const leaves = await leavesOf(RELAYED_CONTENT_MAX_BYTES + 1)
    const asked: string[] = []
    let answer!: (ok: boolean) => void
    const answered = new Promise<boolean>(resolve => { answer = resolve })
    const { bounds } = setup(leaves, [relayed], { waitForDirect: async peer => { asked.push(peer); return await answered } })
    bounds.check()
    bounds.check()
    assert.deepEqual(asked, [PEER], 'each relayed holder is asked once')
    assert.equal(bounds.failure(Date.now(), 60_000), undefined)
    answer(false)
    await answered
    await new Promise(resolve => setImmediate(resolve))
    const err = bounds.failure(Date.now(), 60_000)
    assert.equal(err?.name, 'DirectPathPendingError')
    assert.match(err?.message ?? '', /no direct connection can be made/)
  })

  it('reopens the session once hole punching gives an unlimited connection', async () => {
    const leaves = await leavesOf(RELAYED_CONTENT_MAX_BYTES + 1)
    const conns = [relayed]
    let answer!: (ok: boolean) => void
    const answered = new Promise<boolean>(resolve => { answer = resolve })
    const { bounds, session, reopened } = setup(leaves, conns, { waitForDirect: async () => await answered })
    bounds.check()
    assert.deepEqual(reopened, [])
    conns.push(direct)
    answer(true)
    await answered
    await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(reopened, [session])
    assert.equal(bounds.waiting(), 0)
  })
})
