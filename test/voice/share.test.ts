/**
 * Boards between real in-process peers on 127.0.0.1: a sharer's VIDEO chunks reach a watcher near
 * its board that asked for them (the bytes as sent, in a private space sealed on the way) and not
 * one beyond hearing range; a watcher views only the nearest board; and a hostile peer's video
 * frames, spoken by hand, are dropped with their named reasons while the stream and the peer stay.
 */
import { describe, it, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { createPeerBinding } from '../../src/identity/binding.ts'
import type { Network } from '../../src/net/network.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import {
  VoiceSeal, decodeVoiceFrame, encodeShare, encodeVideo, encodeWantVideo, videoAad, MAX_VIDEO_CHUNK_BYTES, MAX_VIDEO_CHUNKS_PER_FRAME, MAX_VIEWED_BOARDS, VIDEO_CHUNKS_PER_SECOND, VOICE_PROTOCOL,
  type DropReason, type VideoChunk, type VideoEvent
} from '../../src/voice/index.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seeded } from '../helpers/random.ts'
import { voiceGroup, type Vec3 } from '../helpers/voice.ts'

const STEP_MS = 20_000
const SETUP_MS = 60_000
const peers = new LocalPeers('share')
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })
after(async () => { await peers.stop() })

/** `n` nodes in one space (see voiceGroup), stopped (with their sharers) when test `t` ends. */
async function group (t: TestContext | undefined, positions: Vec3[], options: { private?: boolean, rangeM?: number } = {}): Promise<{ nodes: PeerverseNode[], space: string }> {
  return await voiceGroup(peers, eventually, t, positions, {
    ...options,
    stepMs: STEP_MS,
    setupMs: SETUP_MS,
    onStop: nodes => { for (const s of sharers.filter(x => nodes.includes(x.node))) s.stop() }
  })
}

/** A sharer sending a three-chunk frame every 50 ms (bytes from a seeded source, kept by seq and index). */
class Sharer {
  readonly sent = new Map<string, Uint8Array>()
  readonly node: PeerverseNode
  private seq = 0
  private readonly timer: ReturnType<typeof setInterval>
  constructor (node: PeerverseNode, space: string, board: Vec3, seed: number) {
    this.node = node
    node.voice.share(space, true, board)
    const random = seeded(seed)
    this.timer = setInterval(() => {
      const seq = ++this.seq
      for (let index = 0; index < 3; index++) {
        const data = random.bytes(index < 2 ? MAX_VIDEO_CHUNK_BYTES : 1 + random.int(500))
        this.sent.set(`${seq}/${index}`, data)
        try { node.voice.sendVideo(space, { seq, ts: seq * 50, key: seq % 20 === 1, index, count: 3, data }) } catch {}
      }
    }, 50)
  }

  stop (): void { clearInterval(this.timer) }
}

const sharers: Sharer[] = []
after(() => { for (const s of sharers) s.stop() })
function share (node: PeerverseNode, space: string, board: Vec3, seed: number): Sharer {
  const s = new Sharer(node, space, board, seed)
  sharers.push(s)
  return s
}

/** Every video chunk a node passes on, by sharer. */
class Seen {
  readonly chunks = new Map<string, VideoChunk[]>()
  constructor (node: PeerverseNode) {
    node.voice.addEventListener('voice:video', (evt: CustomEvent<VideoEvent>) => {
      const list = this.chunks.get(evt.detail.did) ?? []
      list.push(evt.detail.chunk)
      this.chunks.set(evt.detail.did, list)
    })
  }

  count (did: string): number { return this.chunks.get(did)?.length ?? 0 }
}

describe('boards', { timeout: 400_000 }, () => {
  it('B near A\'s board gets A\'s chunks as sent; C beyond range gets none', async (t) => {
    const { nodes: [a, b, c], space } = await group(t, [[100, 0, 100], [110, 0, 100], [150, 0, 100]])
    const atB = new Seen(b)
    const atC = new Seen(c)
    b.voice.watch(space)
    c.voice.watch(space)
    const sa = share(a, space, [102, 1.5, 100], 1)
    await eventually('B gets 60 of A\'s chunks', () => atB.count(a.did) >= 60)
    sa.stop()
    for (const ch of atB.chunks.get(a.did) ?? []) {
      assert.deepEqual(Uint8Array.from(ch.data), sa.sent.get(`${ch.seq}/${ch.index}`), `chunk ${ch.seq}/${ch.index} as sent`)
      assert.equal(ch.count, 3)
    }
    assert.deepEqual(b.voice.boards(space).boards.map(x => [x.did, x.viewing]), [[a.did, true]])
    assert.equal(atC.count(a.did), 0, 'C is out of range of the board')
    assert.ok(c.voice.boards(space).boards.every(x => !x.viewing))
    assert.equal(a.voice.boards(space).sharing, true)
    assert.equal(b.voice.state(space).share.watching, true)
    // Taken down: B's board goes away, and with it the video.
    a.voice.share(space, false, [102, 1.5, 100])
    await eventually('B sees the board go', () => b.voice.boards(space).boards.length === 0)
  })

  it(`a watcher views the nearest board only (MAX_VIEWED_BOARDS = ${MAX_VIEWED_BOARDS})`, async (t) => {
    const { nodes: [w, s1, s2], space } = await group(t, [[100, 0, 100], [106, 0, 100], [112, 0, 100]])
    const at = new Seen(w)
    w.voice.watch(space)
    share(s1, space, [104, 1.5, 100], 2)
    share(s2, space, [114, 1.5, 100], 3)
    await eventually('W knows both boards and gets S1\'s video', () => w.voice.boards(space).boards.length === 2 && at.count(s1.did) >= 30)
    assert.deepEqual(w.voice.boards(space).boards.filter(x => x.viewing).map(x => x.did), [s1.did])
    const before = at.count(s2.did)
    const n = at.count(s1.did)
    await eventually('more of S1', () => at.count(s1.did) >= n + 30)
    assert.equal(at.count(s2.did), before, 'no video of the farther board')
  })

  it('a social block stops a board\'s video at that watcher only; an owner mute stops it everywhere', async (t) => {
    const { nodes: [o, sh, w], space } = await group(t, [[100, 0, 100], [104, 0, 100], [100, 0, 104]])
    const [atO, atW] = [new Seen(o), new Seen(w)]
    o.voice.watch(space)
    w.voice.watch(space)
    share(sh, space, [102, 1.5, 102], 6)
    await eventually('both get the video', () => atO.count(sh.did) > 0 && atW.count(sh.did) > 0)
    await w.social.setBlocked(sh.did, true)
    await eventually('W no longer views the board', () => !w.voice.boards(space).boards.some(x => x.viewing))
    const nw = atW.count(sh.did)
    const no = atO.count(sh.did)
    await eventually('O gets 30 more', () => atO.count(sh.did) >= no + 30)
    assert.equal(atW.count(sh.did), nw, 'W blocked the sharer')
    await o.space.setPolicy(space, { mute: [sh.did] })
    await eventually('O no longer views the board', () => !o.voice.boards(space).boards.some(x => x.viewing))
    const n = atO.count(sh.did)
    await eventually('the sharer has the policy', () => sh.space.view(space).policy.muted.includes(sh.did))
    assert.throws(() => { sh.voice.sendVideo(space, { seq: 1, ts: 1, key: true, index: 0, count: 1, data: new Uint8Array(10) }) }, { name: 'OwnerMutedError' })
    assert.equal(atO.count(sh.did), n, 'nothing more at O')
  })

  it('in a private space the chunks are sealed on the wire and open at the watcher', async (t) => {
    // Q stands 45 m off: a member O sees but does not hold a stream to (not near in presence), so the
    // stream spoken by hand below is Q's only one; the peers hear to 60 m here, so Q is within earshot.
    const { nodes: [o, p, q], space } = await group(t, [[100, 0, 100], [104, 0, 100], [100, 0, 145]], { private: true, rangeM: 60 })
    const at = new Seen(p)
    p.voice.watch(space)
    const so = share(o, space, [102, 1.5, 100], 4)
    await eventually('P gets 30 of O\'s chunks', () => at.count(o.did) >= 30)
    for (const ch of at.chunks.get(o.did) ?? []) assert.deepEqual(Uint8Array.from(ch.data), so.sent.get(`${ch.seq}/${ch.index}`))
    assert.equal(p.voice.state(space).dropped.decrypt, 0)
    // On the wire (a stream of member Q's, spoken by hand): the chunk is not the bytes sent, and opens with the group key.
    const raw = await openVoice(q.net, o, { space, binding: (await createPeerBinding(q.identity.userKey, q.peerId)).bytes })
    try {
      await raw.read()
      await raw.write(encodeWantVideo(true))
      let f = decodeVoiceFrame(await raw.read())
      while (f.type !== 'video') f = decodeVoiceFrame(await raw.read())
      const sent = so.sent.get(`${f.seq}/${f.index}`) as Uint8Array
      assert.ok(!Buffer.from(f.payload).includes(Buffer.from(sent.subarray(0, 16))), 'no run of the video bytes on the wire')
      const cipher = q.space.cipher(space)
      assert.ok(cipher != null)
      assert.deepEqual(Uint8Array.from(new VoiceSeal().open(space, o.did, cipher, f.payload, videoAad(space, o.did, f.seq, f.index))), sent)
    } finally {
      raw.stream.abort(new Error('done'))
    }
  })
})

// ---------------------------------------------------------------- the wire, by hand

interface Raw { stream: Stream, write: (b: Uint8Array) => Promise<void>, read: () => Promise<Uint8Array> }

async function openVoice (from: Network, to: PeerverseNode, open: Record<string, unknown>): Promise<Raw> {
  const stream = await from.dialProtocol(to.net.peerId, VOICE_PROTOCOL, { signal: AbortSignal.timeout(STEP_MS) })
  const lp = lpStream(stream, { maxDataLength: 64 * 1024 })
  await lp.write(dagCbor.encode(open), { signal: AbortSignal.timeout(STEP_MS) }).catch(() => {})
  return {
    stream,
    write: async b => { await lp.write(b, { signal: AbortSignal.timeout(STEP_MS) }) },
    read: async () => (await lp.read({ signal: AbortSignal.timeout(STEP_MS) })).subarray()
  }
}

describe('bad video from a peer', { timeout: 400_000 }, () => {
  let v: PeerverseNode
  let m: PeerverseNode
  let s: PeerverseNode
  let space = ''
  let binding: Uint8Array
  let atV: Seen
  const dropped = (reason: DropReason): number => v.voice.state(space).dropped[reason]
  const chunk = (seq: number, size: number, extra: Partial<VideoChunk> = {}): Uint8Array => encodeVideo({ seq, ts: seq, key: false, index: 0, count: 1, data: new Uint8Array(size), ...extra })

  before(async () => {
    const g = await group(undefined, [[100, 0, 100], [104, 0, 100], [100, 0, 104]])
    ;[v, m, s] = g.nodes
    space = g.space
    binding = (await createPeerBinding(m.identity.userKey, m.peerId)).bytes
    atV = new Seen(v)
    v.voice.watch(space)
    share(s, space, [100, 1.5, 102], 5)
    await eventually('V gets S\'s video', () => atV.count(s.did) > 0)
  })

  after(async () => { for (const n of [v, m, s]) await n?.stop().catch(() => {}) })

  async function stillWorks (): Promise<void> {
    const n = atV.count(s.did)
    await eventually('V gets S\'s video still', () => atV.count(s.did) >= n + 10)
    assert.ok(v.started)
  }

  async function opened (): Promise<Raw> {
    let raw: Raw | undefined
    await eventually('V answers a stream from M', async () => {
      try {
        const r = await openVoice(m.net, v, { space, binding })
        await r.read()
        raw = r
        return true
      } catch {
        return false
      }
    })
    return raw as Raw
  }

  it(`an oversize chunk, malformed frames and unwanted video are dropped by name; the stream stays`, async () => {
    const raw = await opened()
    const [over, mal, unw] = [dropped('oversize'), dropped('malformed'), dropped('unwanted')]
    await raw.write(chunk(1, MAX_VIDEO_CHUNK_BYTES + 1))
    await eventually('dropped as oversize', () => dropped('oversize') === over + 1)
    await raw.write(chunk(2, 10, { index: 1, count: 1 }))
    await raw.write(chunk(3, 10, { count: MAX_VIDEO_CHUNKS_PER_FRAME + 1 }))
    const nan = encodeShare(true, [0, 0, 0])
    new DataView(nan.buffer).setFloat32(2, Number.NaN)
    await raw.write(nan)
    await raw.write(Uint8Array.of(0x05, 2))
    await eventually('four malformed', () => dropped('malformed') === mal + 4)
    await raw.write(chunk(4, 100))
    await eventually('unwanted', () => dropped('unwanted') === unw + 1)
    assert.equal(raw.stream.status, 'open')
    raw.stream.abort(new Error('done'))
    await stillWorks()
  })

  it(`a flood past VIDEO_CHUNKS_PER_SECOND (${VIDEO_CHUNKS_PER_SECOND}) is dropped as 'rate'; the stream stays`, async () => {
    const raw = await opened()
    const [rate, unw] = [dropped('rate'), dropped('unwanted')]
    const n = 4 * VIDEO_CHUNKS_PER_SECOND
    for (let i = 0; i < n; i++) await raw.write(chunk(i, 200))
    // Every chunk is counted: within the budget as unwanted (V views S's board, not M's), past it as rate.
    await eventually('all counted', () => dropped('rate') - rate + dropped('unwanted') - unw === n)
    assert.ok(dropped('rate') - rate >= n - 2 * VIDEO_CHUNKS_PER_SECOND, `rate drops: ${dropped('rate') - rate}`)
    assert.equal(raw.stream.status, 'open')
    raw.stream.abort(new Error('done'))
    await stillWorks()
  })
})
