/**
 * A social block applies in spaces: three real nodes on 127.0.0.1 (A, B, C) in one space. When A
 * blocks B, B's new chat is kept by A (and so still served to others) but left out of A's chat and
 * A's events; B leaves A's members list at once with a 'space:leave', and B's presence sends A no
 * event while B moves; C, who blocks no one, sees all of B. When A unblocks B, B is back at once
 * where B stands now, with the chat B said meanwhile. The directory's headcount counts B all along.
 * The owner's mute hides a member's chat from everyone, and a joiner sent older messages of theirs
 * blames no one. First, the blocks part alone (src/space/blocks.ts) on a presence model with no network.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { PeerverseNode } from '../../src/node/node.ts'
import { SpaceBlocks } from '../../src/space/blocks.ts'
import type { Joined, SpaceCore } from '../../src/space/joined.ts'
import { applyBeacon, createPresence, removeMember, viewOf } from '../../src/space/presence.ts'
import type { SpaceEvents } from '../../src/space/index.ts'
import { spaceTopic } from '../../src/space/index.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'

/** How long any single step may take before the test fails instead of hanging. */
const STEP_MS = 20_000

const peers = new LocalPeers('space-blocks')
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })
const tcpAddr = (n: PeerverseNode): string => n.addresses().find(a => a.includes('/tcp/')) as string

type Logged = { [K in keyof SpaceEvents]: { type: K, detail: SpaceEvents[K]['detail'] } }[keyof SpaceEvents]

/** Every space event a node emits, in order, as its listeners (the API's event stream) get them. */
function record (node: PeerverseNode): Logged[] {
  const log: Logged[] = []
  for (const type of ['space:presence', 'space:leave', 'space:chat'] as const) {
    node.addEventListener(type, evt => { log.push({ type, detail: (evt as CustomEvent).detail } as Logged) })
  }
  return log
}

const chatOf = (log: Logged[], since: number, author: string): string[] =>
  log.slice(since).flatMap(e => e.type === 'space:chat' && e.detail.author === author ? [e.detail.text] : [])
const presenceOf = (log: Logged[], since: number, did: string): Array<SpaceEvents['space:presence']['detail']> =>
  log.slice(since).flatMap(e => e.type === 'space:presence' && e.detail.did === did ? [e.detail] : [])
const leavesOf = (log: Logged[], since: number, did: string): number =>
  log.slice(since).filter(e => e.type === 'space:leave' && e.detail.did === did).length

describe('blocks in the presence model', () => {
  /** A space's presence with `dids` in it, the blocks part over it, and the events that passed. */
  function setup (dids: string[]): { j: Joined, blocked: Set<string>, blocks: SpaceBlocks, events: Array<[string, string]>, arrive: (did: string) => void } {
    const presence = createPresence({ width: 256, depth: 256, cell: 16 }, 'me', '')
    const j = { d: { id: 'space' }, presence } as unknown as Joined
    const blocked = new Set<string>()
    const events: Array<[string, string]> = []
    const core = {
      did: 'me',
      emit: (type: string, detail: { did?: string, author?: string }) => { if (blocks.passes(type as never, detail as never)) events.push([type, detail.did ?? detail.author ?? '']) }
    } as unknown as SpaceCore
    const blocks = new SpaceBlocks(core, { isBlocked: did => blocked.has(did) })
    const arrive = (did: string): void => {
      const seen = applyBeacon(presence, { author: did, peer: `peer-${did}`, addrs: [], name: did, avatar: '', position: [1, 0, 1], rotation: [0, 0, 0, 1], ts: 1 }, 1)
      if (seen != null) core.emit('space:presence', { space: 'space', ...seen.view })
    }
    for (const did of dids) arrive(did)
    return { j, blocked, blocks, events, arrive }
  }

  it('a member blocked before they arrive is never shown and never sent away', () => {
    const { j, blocked, blocks, events, arrive } = setup(['ann'])
    blocked.add('bob')
    arrive('bob')
    blocks.refresh(j)
    blocks.refresh(j)
    assert.deepEqual(events, [['space:presence', 'ann']])
    assert.equal(blocks.count(j), 2, 'ourselves and ann')
    assert.deepEqual(blocks.visible([...j.presence.members.values()].map(viewOf)).map(m => m.did), ['ann'])
    // Unblocked: shown at once, once.
    blocked.delete('bob')
    blocks.refresh(j)
    blocks.refresh(j)
    assert.deepEqual(events.slice(1), [['space:presence', 'bob']])
  })

  it('one space:leave on a block, nothing while blocked, the member again on unblock; our own did is never hidden', () => {
    const { j, blocked, blocks, events, arrive } = setup(['ann', 'bob'])
    blocked.add('bob').add('me')
    blocks.refresh(j)
    arrive('bob')
    blocks.refresh(j)
    const chat = { space: 'space', id: 'c', author: 'bob', text: 'hi', ts: 1 }
    assert.equal(blocks.passes('space:chat', chat), false)
    assert.equal(blocks.passes('space:chat', { ...chat, author: 'ann' }), true)
    assert.deepEqual(events.slice(2), [['space:leave', 'bob']])
    assert.equal(blocks.blocks('me'), false)
    // Gone while blocked, back while blocked: still no event; gone and unblocked: nothing to show.
    removeMember(j.presence, 'bob')
    blocks.refresh(j)
    arrive('bob')
    blocks.refresh(j)
    assert.deepEqual(events.slice(3), [])
    blocked.delete('bob')
    blocks.refresh(j)
    assert.deepEqual(events.slice(3), [['space:presence', 'bob']])
  })

  it('with no social component, nothing is hidden', () => {
    const presence = createPresence({ width: 256, depth: 256, cell: 16 }, 'me', '')
    const blocks = new SpaceBlocks({ did: 'me' } as unknown as SpaceCore)
    assert.equal(blocks.passes('space:chat', { space: 's', id: 'c', author: 'bob', text: 'hi', ts: 1 }), true)
    assert.equal(blocks.count({ presence } as unknown as Joined), 1)
  })
})

describe('a social block in a space', { timeout: 180_000 }, () => {
  let a: PeerverseNode
  let b: PeerverseNode
  let c: PeerverseNode
  let logA: Logged[]
  let logC: Logged[]
  let space = ''

  before(async () => {
    ;[a, b, c] = await Promise.all([peers.startNode(), peers.startNode(), peers.startNode()])
    for (const [x, y] of [[a, b], [a, c], [b, c]] as const) await x.connect(tcpAddr(y), { signal: AbortSignal.timeout(STEP_MS) })
    logA = record(a)
    logC = record(c)
    space = (await a.space.create({ name: 'Courtyard', displayName: 'ann' })).id
    await b.space.join(space, { name: 'bob' })
    await c.space.join(space, { name: 'cat' })
    const topic = spaceTopic(space)
    await eventually('the gossip mesh is up', () => [a, b, c].every(n => [a, b, c].filter(m => m !== n).every(m => n.topicPeers(topic).includes(m.peerId))))
    for (const n of [a, b, c]) await eventually(`${n.did} sees all three`, () => n.space.who(space).length === 3)
    await b.space.say(space, 'before the block')
    for (const n of [a, c]) await eventually('B\'s first words arrive', () => n.space.chat(space).some(m => m.text === 'before the block'))
  })

  after(async () => { await peers.stop() })

  it('hides the blocked member\'s chat and presence from the blocker only, with a space:leave at once', async () => {
    const since = logA.length
    const sinceC = logC.length
    await a.social.setBlocked(b.did, true)
    await eventually('A\'s listeners get a space:leave for B', () => leavesOf(logA, since, b.did) === 1)
    assert.ok(!a.space.who(space).some(m => m.did === b.did), 'B is not in A\'s members list')
    assert.equal(a.space.view(space).members, 2, 'A counts itself and C')
    assert.equal(a.space.headcount(space), 3, 'the directory\'s headcount still counts B')
    assert.ok(!a.space.chat(space).some(m => m.author === b.did), 'B\'s earlier chat is hidden too')

    // B speaks and moves: C sees both; A keeps the message (its history stays whole for others) but shows nothing.
    const said = await b.space.say(space, 'while blocked')
    b.space.move(space, [100, 0, 100])
    await eventually('C gets B\'s new chat', () => c.space.chat(space).some(m => m.text === 'while blocked') && chatOf(logC, sinceC, b.did).includes('while blocked'))
    await eventually('C sees B move', () => c.space.who(space).some(m => m.did === b.did && m.position[0] === 100))
    assert.ok(presenceOf(logC, sinceC, b.did).length > 0, 'C\'s listeners got B\'s presence')
    await eventually('A keeps B\'s message', async () => (await a.space.store.chat(space)).some(r => r.cid === said.id))
    // C's next words have passed through A's events: anything of B's before them would be logged already.
    await c.space.say(space, 'a marker')
    await eventually('C\'s marker reaches A', () => chatOf(logA, since, c.did).includes('a marker'))
    assert.ok(!a.space.chat(space).some(m => m.author === b.did), 'B\'s chat is not in A\'s chat()')
    assert.deepEqual(chatOf(logA, since, b.did), [], 'no space:chat for B reached A\'s listeners')
    assert.deepEqual(presenceOf(logA, since, b.did), [], 'no space:presence for B reached A\'s listeners')
    assert.equal(leavesOf(logA, since, b.did), 1, 'one space:leave, not one a tick')
    assert.ok(!a.space.who(space).some(m => m.did === b.did))
    assert.ok(a.space.who(space).some(m => m.did === c.did), 'C is still shown')
  })

  it('shows the member again on unblock, where they stand now, with what they said meanwhile', async () => {
    const since = logA.length
    await a.social.setBlocked(b.did, false)
    await eventually('A\'s listeners get B\'s presence at once', () => presenceOf(logA, since, b.did).length > 0)
    assert.deepEqual(presenceOf(logA, since, b.did)[0].position, [100, 0, 100], 'the position B moved to while blocked')
    assert.ok(a.space.who(space).some(m => m.did === b.did), 'B is in A\'s members list')
    assert.equal(a.space.view(space).members, 3)
    assert.deepEqual(a.space.chat(space).filter(m => m.author === b.did).map(m => m.text), ['before the block', 'while blocked'])
    await b.space.say(space, 'after the unblock')
    await eventually('B\'s new chat reaches A\'s listeners', () => chatOf(logA, since, b.did).includes('after the unblock'))
  })

  it('the owner\'s mute hides the member\'s chat from everyone, and a joiner blames no honest peer for the older messages it is sent', async () => {
    await a.space.setPolicy(space, { mute: [b.did] })
    await eventually('C has the mute', () => c.space.view(space).policy.muted.includes(b.did))
    for (const n of [a, c]) assert.ok(!n.space.chat(space).some(m => m.author === b.did), 'the muted member\'s chat is hidden')
    await assert.rejects(b.space.say(space, 'muted words'), { name: 'ExcludedError' })
    assert.ok(c.space.who(space).some(m => m.did === b.did), 'a mute is for chat: the member is still shown')
    const d = await peers.startNode()
    await d.connect(tcpAddr(a), { signal: AbortSignal.timeout(STEP_MS) })
    await d.connect(tcpAddr(c), { signal: AbortSignal.timeout(STEP_MS) })
    await d.space.join(space, { name: 'dee' })
    await eventually('D has the history', () => d.space.chat(space).some(m => m.text === 'a marker'))
    assert.ok(!d.space.chat(space).some(m => m.author === b.did), 'D shows none of the muted member\'s chat')
    const blamed = (peers.rejections.get(d) ?? []).filter(r => r.peerId === a.peerId || r.peerId === c.peerId)
    assert.deepEqual(blamed, [], 'no honest peer is reported for what it kept from before the mute')
  })
})
