/**
 * Node-only: the API's routes for spaces: the spaces we are in, a space's view, members, chat and
 * objects; creating, joining, leaving, our look and pose, chat, objects and the owner's policy.
 * Also the one message a client sends on the event WebSocket, its moves.
 */
import type { IncomingMessage } from 'node:http'
import { parseCid } from '../../content/index.ts'
import { browserLink, formatLink, parseLinkOf, type Link } from '../../net/links.ts'
import type { PeerverseNode } from '../../node/node.ts'
import { ApiError } from '../errors.ts'
import { intParam, optInt, optStr, str, vec, type Route } from '../routes.ts'

type Vec3 = [number, number, number]
type Quat = [number, number, number, number]

/** Largest list in one policy change. */
export const MAX_API_POLICY_LIST = 1024

/** A client's move, from HTTP or the event WebSocket. */
export function move (node: PeerverseNode, msg: { space?: unknown, position?: unknown, rotation?: unknown }, space: string): void {
  node.space.move(space, vec(msg.position, 3, 'position') as Vec3, msg.rotation == null ? undefined : vec(msg.rotation, 4, 'rotation') as Quat)
}

/** Messages a client may send on the event WebSocket, by type. */
export const spaceSocketMessages: Record<string, (node: PeerverseNode, msg: Record<string, unknown>) => void> = {
  'space:move': (node, msg) => { move(node, msg, String(msg.space)) }
}

/** The origin this API was reached at (its Host header, checked by the server): the browser link's client. */
export function apiOrigin (req: IncomingMessage): string {
  return `http://${req.headers.host ?? '127.0.0.1'}`
}

/** A link as the API answers it: the code (`pv:...`) and the browser client's URL on this API's origin. */
export function linkAnswer (req: IncomingMessage, link: Link): { code: string, link: string } {
  return { code: formatLink(link), link: browserLink(apiOrigin(req), link) }
}

/**
 * POST /api/v0/space/join {space} or {link}: the link (any form: `pv:space=...`, a client URL,
 * `#space=ID`) gives the space id and peers to ask first; with both, they must name one space.
 */
async function joinSpace (node: PeerverseNode, b: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
  let id = b.space
  let peers: string[] = []
  if (b.link !== undefined) {
    if (typeof b.link !== 'string') throw new ApiError(400, 'BadRequest', 'link must be a string')
    const link = parseLinkOf(b.link, 'space')
    if (id !== undefined && id !== link.target) throw new ApiError(400, 'BadRequest', 'space and link name different spaces')
    id = link.target
    peers = link.peers
  }
  if (typeof id !== 'string') throw new ApiError(400, 'BadRequest', 'space (an id) or link is required')
  return await node.space.join(id, { name: optStr(b.name, 'name'), avatar: optStr(b.avatar, 'avatar'), signal, peers })
}

export const spaceRoutes: Route[] = [
  { method: 'GET', path: '/api/v0/space', handle: ({ node }) => ({ spaces: node.space.spaces() }) },
  // Before GET /api/v0/space/*: GET /api/v0/space/link?id=ID -> { code, link }.
  { method: 'GET', path: '/api/v0/space/link', handle: ({ node, url, req }) => linkAnswer(req, node.space.link(url.searchParams.get('id') ?? '')) },
  {
    method: 'GET',
    path: '/api/v0/space/*',
    handle: ({ node, rest, url }) => {
      const [id, what] = rest.split('/').map(decodeURIComponent)
      switch (what ?? '') {
        case '': return node.space.view(id)
        case 'who': return { members: node.space.who(id) }
        case 'chat': return { chat: node.space.chat(id, { limit: url.searchParams.has('limit') ? intParam(url.searchParams.get('limit') ?? '', 'limit') : undefined }) }
        case 'objects': return { objects: node.space.objects(id) }
      }
      throw new ApiError(404, 'NotFound', `no endpoint GET ${url.pathname}`)
    }
  },
  {
    method: 'POST',
    path: '/api/v0/space/create',
    handle: async ({ node, body }) => {
      const b = await body()
      return await node.space.create({
        name: str(b, 'name'),
        private: b.private === true,
        grid: { width: optInt(b.width, 'width'), depth: optInt(b.depth, 'depth'), cell: optInt(b.cell, 'cell') },
        displayName: typeof b.displayName === 'string' ? b.displayName : undefined,
        avatar: typeof b.avatar === 'string' ? b.avatar : undefined
      })
    }
  },
  {
    method: 'POST',
    path: '/api/v0/space/join',
    handle: async ({ node, body, signal }) => await joinSpace(node, await body(), signal)
  },
  { method: 'POST', path: '/api/v0/space/leave', handle: async ({ node, body }) => { await node.space.leave(str(await body(), 'space')); return { spaces: node.space.spaces() } } },
  {
    method: 'POST',
    path: '/api/v0/space/look',
    handle: async ({ node, body }) => {
      const b = await body()
      node.space.setLook(str(b, 'space'), { name: optStr(b.name, 'name'), avatar: optStr(b.avatar, 'avatar') })
      return { ok: true }
    }
  },
  { method: 'POST', path: '/api/v0/space/move', handle: async ({ node, body }) => { const b = await body(); move(node, b, str(b, 'space')); return { ok: true } } },
  { method: 'POST', path: '/api/v0/space/say', handle: async ({ node, body }) => { const b = await body(); return await node.space.say(str(b, 'space'), str(b, 'text')) } },
  {
    method: 'POST',
    path: '/api/v0/space/object/place',
    handle: async ({ node, body }) => {
      const b = await body()
      const space = str(b, 'space')
      const id = await node.space.place(space, {
        model: parseCid(b.model).toString(),
        position: vec(b.position, 3, 'position') as Vec3,
        rotation: (b.rotation == null ? [0, 0, 0, 1] : vec(b.rotation, 4, 'rotation')) as Quat,
        scale: (b.scale == null ? [1, 1, 1] : vec(b.scale, 3, 'scale')) as Vec3,
        props: (b.props ?? {}) as Record<string, string | number | boolean>
      }, optStr(b.id, 'id'))
      return { id }
    }
  },
  {
    method: 'POST',
    path: '/api/v0/space/object/move',
    handle: async ({ node, body }) => {
      const b = await body()
      const t: { position?: Vec3, rotation?: Quat, scale?: Vec3 } = {}
      if (b.position != null) t.position = vec(b.position, 3, 'position') as Vec3
      if (b.rotation != null) t.rotation = vec(b.rotation, 4, 'rotation') as Quat
      if (b.scale != null) t.scale = vec(b.scale, 3, 'scale') as Vec3
      await node.space.moveObject(str(b, 'space'), str(b, 'id'), t)
      return { ok: true }
    }
  },
  { method: 'POST', path: '/api/v0/space/object/remove', handle: async ({ node, body }) => { const b = await body(); await node.space.removeObject(str(b, 'space'), str(b, 'id')); return { ok: true } } },
  {
    method: 'POST',
    path: '/api/v0/space/policy',
    handle: async ({ node, body }) => {
      const b = await body()
      const lists = ['addEditors', 'removeEditors', 'ban', 'unban', 'mute', 'unmute', 'kick', 'addMembers', 'removeMembers'] as const
      const change: Record<string, unknown> = {}
      for (const k of lists) {
        const v = b[k]
        if (v === undefined) continue
        if (!Array.isArray(v) || v.length > MAX_API_POLICY_LIST || !v.every(x => typeof x === 'string')) throw new ApiError(400, 'BadRequest', `${k} must be a list of did:key strings`)
        change[k] = v
      }
      if (b.kickMs !== undefined) change.kickMs = optInt(b.kickMs, 'kickMs')
      const { space: _s, ...policy } = await node.space.setPolicy(str(b, 'space'), change)
      return policy
    }
  }
]
