/**
 * Voice between real in-process peers on 127.0.0.1: who hears whom (range, the bound of heard
 * speakers, switching when one stops), every exclusion (owner ban and mute at every honest
 * listener, social block and personal voice mute at one listener), sealing in a private space as
 * seen on the wire, and a hostile peer's streams spoken by hand, each dropped with its named
 * reason while the peer stays up.
 */
import { describe, it, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { createPeerBinding } from '../../src/identity/binding.ts'
import { ed25519KeyFromSeed } from '../../src/identity/ed25519.ts'
import type { Network } from '../../src/net/network.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { createDescriptor } from '../../src/space/records.ts'
import {
  audioAad, decodeVoiceFrame, encodeAudio, encodeTalking, encodeWant, MAX_VOICE_PAYLOAD_BYTES, MAX_VOICE_READ_BYTES, MAX_VOICE_STREAMS_PER_PEER,
  VOICE_FRAMES_PER_SECOND, VOICE_PROTOCOL, VoiceSeal, type DropReason
} from '../../src/voice/index.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seeded } from '../helpers/random.ts'
import { voiceGroup, type Vec3 } from '../helpers/voice.ts'

const STEP_MS = 20_000
/** Setting a group up (joins, the gossip mesh, presence) on a loaded machine may take longer. */
const SETUP_MS = 60_000
const peers = new LocalPeers('voice')
const eventually = waiter({ timeoutMs: STEP_MS, intervalMs: 25 })
after(async () => { await peers.stop() })

/** `n` nodes in one space (see voiceGroup), stopped (with their talkers) when test `t` ends. */
async function group (t: TestContext | undefined, positions: Vec3[], options: { maxHeard?: number, private?: boolean } = {}): Promise<{ nodes: PeerverseNode[], space: string }> {
  return await voiceGroup(peers, eventually, t, positions, {
    ...options,
    stepMs: STEP_MS,
    setupMs: SETUP_MS,
    onStop: nodes => { for (const tk of talkers.filter(x => nodes.includes(x.node))) tk.stop() }
  })
}

/** A speaker sending a frame every 20 ms (its bytes from a seeded source, kept by seq). */
class Talker {
  readonly sent = new Map<number, Uint8Array>()
  private seq = 0
  private readonly timer: ReturnType<typeof setInterval>
  readonly node: PeerverseNode
  constructor (node: PeerverseNode, space: string, seed: number) {
    this.node = node
    const random = seeded(seed)
    this.timer = setInterval(() => {
      const data = random.bytes(60 + random.int(100))
      const seq = ++this.seq
      this.sent.set(seq, data)
      try { node.voice.send(space, { seq, ts: seq * 20, level: 120, data }) } catch {}
    }, 20)
  }

  stop (): void { clearInterval(this.timer) }
}

/** Every voice frame a node passes on, by speaker. */
class Heard {
  readonly frames = new Map<string, Array<{ seq: number, data: Uint8Array }>>()
  constructor (node: PeerverseNode) {
    node.voice.addEventListener('voice:frame', evt => {
      const list = this.frames.get(evt.detail.did) ?? []
      list.push({ seq: evt.detail.seq, data: evt.detail.data })
      this.frames.set(evt.detail.did, list)
    })
  }

  count (did: string): number { return this.frames.get(did)?.length ?? 0 }
}

const talkers: Talker[] = []
after(() => { for (const t of talkers) t.stop() })
function talk (node: PeerverseNode, space: string, seed: number): Talker {
  const t = new Talker(node, space, seed)
  talkers.push(t)
  return t
}

describe('who hears whom', { timeout: 400_000 }, () => {
  it('B 10 m away hears A in order with the bytes sent; C 50 m away hears nothing', async (t) => {
    const { nodes: [a, b, c], space } = await group(t, [[100, 0, 100], [110, 0, 100], [150, 0, 100]])
    const atB = new Heard(b)
    const atC = new Heard(c)
    b.voice.listen(space)
    c.voice.listen(space)
    const ta = talk(a, space, 1)
    await eventually('B hears 50 of A\'s frames', () => atB.count(a.did) >= 50)
    ta.stop()
    const got = atB.frames.get(a.did) ?? []
    for (let i = 1; i < got.length; i++) assert.ok(got[i].seq > got[i - 1].seq, 'in order')
    for (const f of got) assert.deepEqual(Uint8Array.from(f.data), ta.sent.get(f.seq), `frame ${f.seq} as sent`)
    assert.equal(atC.count(a.did), 0, 'C is out of range')
    assert.deepEqual(c.voice.state(space).heard, [])
    const sb = b.voice.state(space)
    assert.equal(sb.listening, true)
    assert.ok(sb.speakers.some(s => s.did === a.did && s.receiving))
    assert.equal(a.voice.state(space).sending, true)
  })

  it('with maxHeard 2, a listener hears the two nearest of four talking, and the next when one stops', async (t) => {
    const { nodes: [l, s1, s2, s3, s4], space } = await group(t, [[100, 0, 100], [104, 0, 100], [108, 0, 100], [112, 0, 100], [116, 0, 100]], { maxHeard: 2 })
    const at = new Heard(l)
    l.voice.listen(space)
    const t1 = talk(s1, space, 11)
    talk(s2, space, 12)
    talk(s3, space, 13)
    talk(s4, space, 14)
    await eventually('L hears S1 and S2', () => {
      const heard = l.voice.state(space).heard
      return heard.length === 2 && heard[0] === s1.did && heard[1] === s2.did && at.count(s1.did) > 0 && at.count(s2.did) > 0
    })
    const far = [at.count(s3.did), at.count(s4.did)]
    const [n1, n2] = [at.count(s1.did), at.count(s2.did)]
    await eventually('20 more frames of S1 and S2', () => at.count(s1.did) >= n1 + 20 && at.count(s2.did) >= n2 + 20)
    assert.deepEqual([at.count(s3.did), at.count(s4.did)], far, 'nothing from the farther two meanwhile')
    t1.stop()
    await eventually('L hears S2 and S3 once S1 stopped', () => {
      const heard = l.voice.state(space).heard
      return heard.length === 2 && heard[0] === s2.did && heard[1] === s3.did
    })
    const m1 = at.count(s1.did)
    const m3 = at.count(s3.did)
    const m4 = at.count(s4.did)
    await eventually('20 more frames of S3', () => at.count(s3.did) >= m3 + 20)
    assert.equal(at.count(s1.did), m1)
    assert.equal(at.count(s4.did), m4)
    assert.ok(l.voice.state(space).dropped.unwanted >= 0)
  })
})

/** Makes a node ignore what the owner's policy says of itself: it goes on sending (a dishonest speaker). */
function ignorePolicy (node: PeerverseNode): void {
  const spaces = (node.voice as unknown as { c: { spaces: { isExcluded: (s: string, d: string) => boolean, isOwnerMuted: (s: string, d: string) => boolean } } }).c.spaces
  const { isExcluded, isOwnerMuted } = spaces
  spaces.isExcluded = (s, d) => d !== node.did && isExcluded(s, d)
  spaces.isOwnerMuted = (s, d) => d !== node.did && isOwnerMuted(s, d)
}

describe('exclusions', { timeout: 400_000 }, () => {
  it('an owner ban and an owner mute stop a member\'s frames at every honest listener', async (t) => {
    const { nodes: [owner, h, k, m, x], space } = await group(t, [[100, 0, 100], [104, 0, 100], [100, 0, 104], [104, 0, 104], [96, 0, 100]])
    const heard = [new Heard(owner), new Heard(h)]
    owner.voice.listen(space)
    h.voice.listen(space)
    ignorePolicy(m)
    ignorePolicy(x)
    talk(k, space, 21)
    talk(m, space, 22)
    talk(x, space, 23)
    for (const at of heard) await eventually('both listeners hear K, M and X', () => [k, m, x].every(n => at.count(n.did) > 0))
    await owner.space.setPolicy(space, { mute: [m.did], ban: [x.did] })
    await eventually('H has the policy', () => h.space.view(space).policy.muted.includes(m.did) && h.space.view(space).policy.banned.includes(x.did))
    const frozen = heard.map(at => [at.count(m.did), at.count(x.did)])
    const ks = heard.map(at => at.count(k.did))
    for (const [i, at] of heard.entries()) await eventually('30 more of K', () => at.count(k.did) >= ks[i] + 30)
    assert.deepEqual(heard.map(at => [at.count(m.did), at.count(x.did)]), frozen, 'nothing more of M or X')
    for (const n of [owner, h]) assert.ok(!n.voice.state(space).heard.includes(m.did) && !n.voice.state(space).heard.includes(x.did))
  })

  it('a social block and a personal voice mute stop a member\'s frames at that listener only', async (t) => {
    const { nodes: [s, l1, l2], space } = await group(t, [[100, 0, 100], [104, 0, 100], [100, 0, 104]])
    const [h1, h2] = [new Heard(l1), new Heard(l2)]
    l1.voice.listen(space)
    l2.voice.listen(space)
    talk(s, space, 31)
    await eventually('both hear S', () => h1.count(s.did) > 0 && h2.count(s.did) > 0)
    await l1.social.setBlocked(s.did, true)
    await eventually('L1 no longer wants S', () => !l1.voice.state(space).heard.includes(s.did))
    let n1 = h1.count(s.did)
    let n2 = h2.count(s.did)
    await eventually('L2 hears 30 more', () => h2.count(s.did) >= n2 + 30)
    assert.equal(h1.count(s.did), n1, 'L1 blocked S')
    // S listening too dials L1: the stream is refused as blocked, and S's honest peer is not blamed.
    const blocked = l1.voice.state(space).dropped.blocked
    s.voice.listen(space)
    await eventually('L1 refuses S\'s stream as blocked', () => l1.voice.state(space).dropped.blocked > blocked)
    assert.ok(!(peers.rejections.get(l1) ?? []).some(r => r.peerId === s.peerId && r.protocol === VOICE_PROTOCOL), 'no rejection of S')
    s.voice.unlisten(space)
    await l1.social.setBlocked(s.did, false)
    await l2.voice.setVoiceMuted(space, s.did, true)
    assert.ok(!l2.voice.state(space).heard.includes(s.did))
    n2 = h2.count(s.did)
    n1 = h1.count(s.did)
    await eventually('L1 hears 30 more', () => h1.count(s.did) >= n1 + 30)
    assert.equal(h2.count(s.did), n2, 'L2 muted S')
  })
})

// ---------------------------------------------------------------- the wire, by hand

interface Raw { stream: Stream, write: (b: Uint8Array) => Promise<void>, read: () => Promise<Uint8Array> }

/** A voice stream from `from` to `to` opened with `open`. */
async function openVoice (from: Network, to: PeerverseNode, open: Record<string, unknown>): Promise<Raw> {
  const stream = await from.dialProtocol(to.net.peerId, VOICE_PROTOCOL, { signal: AbortSignal.timeout(STEP_MS) })
  const lp = lpStream(stream, { maxDataLength: 64 * 1024 })
  // A stream refused at once may be closed before this write lands.
  await lp.write(dagCbor.encode(open), { signal: AbortSignal.timeout(STEP_MS) }).catch(() => {})
  return {
    stream,
    write: async b => { await lp.write(b, { signal: AbortSignal.timeout(STEP_MS) }) },
    read: async () => (await lp.read({ signal: AbortSignal.timeout(STEP_MS) })).subarray()
  }
}

async function ended (stream: Stream): Promise<void> {
  await eventually('the stream is over', () => stream.status !== 'open')
}

describe('sealing in a private space', { timeout: 200_000 }, () => {
  it('the AUDIO payload on the wire is not the Opus bytes and opens to them with the group key', async (t) => {
    const { nodes: [o, p], space } = await group(t, [[100, 0, 100], [104, 0, 100]], { private: true })
    const binding = (await createPeerBinding(p.identity.userKey, p.peerId)).bytes
    const raw = await openVoice(p.net, o, { space, binding })
    const open = dagCbor.decode(await raw.read()) as { space: string }
    assert.equal(open.space, space)
    await raw.write(encodeWant(true))
    const opus = seeded(41).bytes(120)
    const timer = setInterval(() => { try { o.voice.send(space, { seq: 7, ts: 1, level: 9, data: opus }) } catch {} }, 20)
    try {
      let f = decodeVoiceFrame(await raw.read())
      while (f.type !== 'audio') f = decodeVoiceFrame(await raw.read())
      assert.equal(f.seq, 7)
      assert.notDeepEqual(Uint8Array.from(f.payload), opus)
      assert.ok(!Buffer.from(f.payload).includes(Buffer.from(opus.subarray(0, 16))), 'no run of the Opus bytes on the wire')
      const cipher = p.space.cipher(space)
      assert.ok(cipher != null)
      const seal = new VoiceSeal()
      assert.deepEqual(Uint8Array.from(seal.open(space, o.did, cipher, f.payload, audioAad(space, o.did, 7))), opus)
      assert.throws(() => seal.open(space, o.did, cipher, f.payload, audioAad(space, o.did, 8)), { name: 'VoiceOpenError' })
      assert.throws(() => cipher.decrypt(f.payload, audioAad(space, o.did, 7)), 'not a group message: voice spends none of the epoch\'s budget')
    } finally {
      clearInterval(timer)
      raw.stream.abort(new Error('done'))
    }
  })
})

describe('bad input from a peer', { timeout: 400_000 }, () => {
  let v: PeerverseNode
  let m: PeerverseNode
  let s: PeerverseNode
  let space = ''
  let binding: Uint8Array
  const dropped = (reason: DropReason): number => v.voice.state(space).dropped[reason]
  const rejected = (name: string, since: number): boolean => (peers.rejections.get(v) ?? []).slice(since).some(r => r.protocol === VOICE_PROTOCOL && r.error.startsWith(name + ':'))
  const seen = (since: number): string => JSON.stringify((peers.rejections.get(v) ?? []).slice(since).map(r => r.error))
  const mark = (): number => (peers.rejections.get(v) ?? []).length
  let atV: Heard

  before(async () => {
    const g = await group(undefined, [[100, 0, 100], [104, 0, 100], [100, 0, 104]])
    ;[v, m, s] = g.nodes
    space = g.space
    binding = (await createPeerBinding(m.identity.userKey, m.peerId)).bytes
    atV = new Heard(v)
    v.voice.listen(space)
    talk(s, space, 51)
    await eventually('V hears S', () => atV.count(s.did) > 0)
  })

  /** V still hears the honest speaker. */
  async function stillWorks (): Promise<void> {
    const n = atV.count(s.did)
    await eventually('V hears S still', () => atV.count(s.did) >= n + 10)
    assert.ok(v.started)
  }

  /** A stream from M that V answered (streams of earlier steps may take a moment to be let go at V's end). */
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

  it('an oversize payload is dropped; a frame past MAX_VOICE_READ_BYTES closes the stream', async () => {
    const raw = await opened()
    const before = dropped('oversize')
    await raw.write(encodeAudio({ seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_PAYLOAD_BYTES + 1) }))
    await eventually('dropped as oversize', () => dropped('oversize') === before + 1)
    const since = mark()
    await raw.write(new Uint8Array(MAX_VOICE_READ_BYTES + 1).fill(1)).catch(() => {})
    await eventually('rejected', () => rejected('InvalidDataLengthError', since))
    await ended(raw.stream)
    assert.equal(dropped('oversize'), before + 2)
    await stillWorks()
  })

  it('malformed frames and unwanted audio are dropped by name, and the stream stays', async () => {
    const raw = await opened()
    const [mal, unw] = [dropped('malformed'), dropped('unwanted')]
    await raw.write(Uint8Array.of(0x09, 1, 2))
    await raw.write(Uint8Array.of(0x02, 7))
    await raw.write(Uint8Array.of(0x01, 0, 0))
    await eventually('three malformed', () => dropped('malformed') === mal + 3)
    await raw.write(encodeAudio({ seq: 1, ts: 1, level: 1, data: new Uint8Array(50) }))
    await eventually('unwanted', () => dropped('unwanted') === unw + 1)
    assert.equal(raw.stream.status, 'open')
    raw.stream.abort(new Error('done'))
    await stillWorks()
  })

  it(`a flood past VOICE_FRAMES_PER_SECOND (${VOICE_FRAMES_PER_SECOND}) closes the stream with VoiceRateLimitError`, async () => {
    const raw = await opened()
    const since = mark()
    const before = dropped('rate')
    try {
      for (let i = 0; i < 4 * VOICE_FRAMES_PER_SECOND; i++) await raw.write(encodeWant(false))
    } catch {}
    await eventually('rejected', () => rejected('VoiceRateLimitError', since))
    await ended(raw.stream)
    assert.equal(dropped('rate'), before + 1)
    await stillWorks()
  })

  it(`more than MAX_VOICE_STREAMS_PER_PEER (${MAX_VOICE_STREAMS_PER_PEER}) streams: the next is closed`, async () => {
    const held: Raw[] = []
    for (let i = 0; i < MAX_VOICE_STREAMS_PER_PEER; i++) held.push(await opened())
    const since = mark()
    const before = dropped('rate')
    const extra = await openVoice(m.net, v, { space, binding })
    await eventually('rejected', () => rejected('VoiceRateLimitError', since))
    await ended(extra.stream)
    assert.equal(dropped('rate'), before + 1)
    for (const h of held) { assert.equal(h.stream.status, 'open'); h.stream.abort(new Error('done')) }
    await stillWorks()
  })

  it('a non-member, a forged binding and a space V is not in are refused by name', async () => {
    const stranger: Network = await peers.newPeer()
    await stranger.dial(v.net.getMultiaddrs()[0])
    const strangerKey = ed25519KeyFromSeed(new Uint8Array(32).fill(7))
    const strangerBinding = (await createPeerBinding(strangerKey, stranger.peerId.toString())).bytes
    let since = mark()
    let before = dropped('not-member')
    const a = await openVoice(stranger, v, { space, binding: strangerBinding })
    await eventually('a non-member is refused', () => rejected('VoiceNotMemberError', since))
    await ended(a.stream)
    assert.equal(dropped('not-member'), before + 1)
    since = mark()
    before = dropped('not-member')
    const forged = (await createPeerBinding(m.identity.userKey, s.peerId)).bytes
    const b = await openVoice(m.net, v, { space, binding: forged })
    await eventually(`a forged binding is refused (${seen(since)})`, () => rejected('PeerBindingMismatchError', since))
    await ended(b.stream)
    assert.equal(dropped('not-member'), before + 1)
    since = mark()
    before = dropped('not-joined')
    const elsewhere = (await createDescriptor(ed25519KeyFromSeed(new Uint8Array(32).fill(9)), { name: 'Elsewhere' })).id
    const c = await openVoice(m.net, v, { space: elsewhere, binding })
    await eventually('a space V is not in is refused', () => rejected('NotJoinedError', since))
    await ended(c.stream)
    assert.equal(dropped('not-joined'), before + 1)
    since = mark()
    const d = await openVoice(m.net, v, { space, nonsense: true })
    await eventually('a malformed opening is refused', () => rejected('InvalidVoiceOpenError', since))
    await ended(d.stream)
    await stillWorks()
  })

  it('a stream from a member the owner banned is refused with ExcludedError', async () => {
    await v.space.setPolicy(space, { ban: [m.did] })
    const since = mark()
    const before = dropped('excluded')
    const raw = await openVoice(m.net, v, { space, binding })
    await eventually(`a banned member is refused (${seen(since)})`, () => rejected('ExcludedError', since))
    await ended(raw.stream)
    assert.equal(dropped('excluded'), before + 1)
    await stillWorks()
  })

  it('our own bad frames are refused with named errors', () => {
    assert.throws(() => { v.voice.send('nowhere', { seq: 1, ts: 1, level: 1, data: new Uint8Array(10) }) }, { name: 'NotJoinedError' })
    assert.throws(() => { v.voice.send(space, { seq: 1, ts: 1, level: 1, data: new Uint8Array(MAX_VOICE_PAYLOAD_BYTES + 1) }) }, { name: 'VoiceFrameTooLargeError' })
    assert.throws(() => { v.voice.send(space, { seq: -1, ts: 1, level: 1, data: new Uint8Array(10) }) }, { name: 'InvalidVoiceFrameError' })
    assert.throws(() => { v.voice.send(space, { seq: 1, ts: 1, level: 256, data: new Uint8Array(10) }) }, { name: 'InvalidVoiceFrameError' })
  })
})
