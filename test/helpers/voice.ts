/**
 * What the voice tests share. For a unit test of the voice service alone: a protocol port that
 * dials nobody, a service of ours at the origin of a space with its ports faked (a member list and
 * an optional cipher), and a member's stream into it (a real in-memory libp2p stream pair, opened
 * as a peer opens one). For tests between real peers: `voiceGroup`, n in-process peers in one
 * space (the first owns it), each at its position, each seeing the others it should.
 */
import type { TestContext } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { createPeerBinding } from '../../src/identity/binding.ts'
import { didFromPublicKey } from '../../src/identity/did.ts'
import { ed25519KeyFromSeed, type Ed25519Key } from '../../src/identity/ed25519.ts'
import { framed, type Framed } from '../../src/net/framed.ts'
import type { ProtocolHandler, ProtocolPort } from '../../src/net/ports.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { spaceTopic } from '../../src/space/index.ts'
import { encodeOpen, MAX_VOICE_READ_BYTES, voice, type VoiceCipher, type VoiceMember, type VoiceService } from '../../src/voice/index.ts'
import type { LocalPeers, Eventually } from './local-peers.ts'

export const UNIT_SPACE = 'space-under-test'
export const keyOf = (i: number): Ed25519Key => ed25519KeyFromSeed(new Uint8Array(32).fill(i + 1))
export const didOf = (key: Ed25519Key): string => didFromPublicKey(key.publicKey)

/** A protocol port that records the handler and dials nobody. */
export function fakeProtocols (onHandle: (h: ProtocolHandler) => void = () => {}): ProtocolPort {
  return {
    peerId: 'peer-me',
    addresses: () => [],
    handle: async (_p: string, h: ProtocolHandler) => { onHandle(h) },
    unhandle: async () => {},
    dial: async () => { throw new Error('no dialling in this test') },
    peers: () => [],
    connections: () => [],
    hangUp: async () => {},
    onPeer: () => () => {}
  }
}

export interface UnitService {
  service: VoiceService
  handler: () => ProtocolHandler | undefined
  /** The names of the errors reported to onRejected, in order. */
  rejected: string[]
  /** A stream from member `key` on `peer`, opened and answered. */
  open: (key: Ed25519Key, peer: string) => Promise<{ stream: Stream, f: Framed }>
}

/** A started voice service of ours at the origin of UNIT_SPACE, seeing `members` (and sealing with `cipher`). */
export async function serviceAtOrigin (myKey: Ed25519Key, members: VoiceMember[], options: { cipher?: VoiceCipher } = {}): Promise<UnitService> {
  let handler: ProtocolHandler | undefined
  const rejected: string[] = []
  const service = voice()({
    protocols: fakeProtocols(h => { handler = h }),
    onRejected: (_peer, _protocol, err) => { rejected.push(err.name) },
    identity: { did: didOf(myKey), key: myKey, binding: (await createPeerBinding(myKey, 'peer-me')).bytes },
    spaces: { isJoined: id => id === UNIT_SPACE, who: () => members, me: () => ({ position: [0, 0, 0] }), isExcluded: () => false, isOwnerMuted: () => false, cipher: () => options.cipher },
    social: { isBlocked: () => false, isMuted: () => false }
  })
  await service.start()
  const open = async (key: Ed25519Key, peer: string): Promise<{ stream: Stream, f: Framed }> => {
    const [local, remote] = await streamPair()
    if (handler == null) throw new Error('the service registered no handler')
    handler(remote, { peer, address: '/memory/test', limited: false })
    const f = framed(local, { maxFrameBytes: MAX_VOICE_READ_BYTES })
    await f.write(encodeOpen(UNIT_SPACE, (await createPeerBinding(key, peer)).bytes))
    if (await f.read({ signal: AbortSignal.timeout(10_000) }) == null) throw new Error('the service did not answer the opening')
    return { stream: local, f }
  }
  return { service, handler: () => handler, rejected, open }
}

export type Vec3 = [number, number, number]

const tcpAddr = (n: PeerverseNode): string => n.addresses().find(a => a.includes('/tcp/')) as string

/** Connects every pair of nodes. */
export async function mesh (list: PeerverseNode[], timeoutMs: number): Promise<void> {
  for (let i = 0; i < list.length; i++) {
    for (let k = i + 1; k < list.length; k++) await list[i].connect(tcpAddr(list[k]), { signal: AbortSignal.timeout(timeoutMs) })
  }
}

/**
 * `n` nodes in one space (the first owns it), each at its position, each seeing the others it
 * should (near when within 30 m); stopped when test `t` ends (with `onStop` first), so the machine
 * carries one group at a time.
 */
export async function voiceGroup (peers: LocalPeers, eventually: Eventually, t: TestContext | undefined, positions: Vec3[],
  options: { maxHeard?: number, rangeM?: number, private?: boolean, stepMs: number, setupMs: number, onStop?: (nodes: PeerverseNode[]) => void }): Promise<{ nodes: PeerverseNode[], space: string }> {
  const nodes = await Promise.all(positions.map(async () => await peers.startNode({ voice: { maxHeard: options.maxHeard, rangeM: options.rangeM } })))
  t?.after(async () => {
    options.onStop?.(nodes)
    for (const n of nodes) await n.stop().catch(() => {})
  })
  await mesh(nodes, options.stepMs)
  const space = (await nodes[0].space.create({ name: 'Voice room', private: options.private, displayName: 'n0' })).id
  if (options.private === true) await nodes[0].space.setPolicy(space, { addMembers: nodes.slice(1).map(n => n.did) })
  const holders = nodes[0].space.link(space).peers
  for (let i = 1; i < nodes.length; i++) await nodes[i].space.join(space, { name: `n${i}`, peers: holders })
  for (const n of nodes) await eventually('the space mesh is up', () => n.topicPeers(spaceTopic(space)).length >= nodes.length - 1, { timeoutMs: options.setupMs })
  nodes.forEach((n, i) => { n.space.move(space, positions[i]) })
  for (const n of nodes) {
    const at = positions[nodes.indexOf(n)]
    await eventually('every member is seen (near when in range)', () => nodes.every((o, i) => o === n ||
      n.space.who(space).some(m => m.did === o.did && (m.near || Math.hypot(positions[i][0] - at[0], positions[i][2] - at[2]) > 30))), { timeoutMs: options.setupMs })
  }
  return { nodes, space }
}
