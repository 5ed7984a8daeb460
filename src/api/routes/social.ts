/**
 * Node-only: the API's routes for the social feed: the timeline, follows, lists, profiles and
 * entries of a feed; posting, replying, liking, deleting, following, profiles, mutes and blocks.
 * A reply or like also goes to the target's author as a notice (`author` names them when this peer
 * does not hold the target); the timeline includes the replies to our posts accepted from anyone.
 */
import { CID } from 'multiformats/cid'
import { parseCid } from '../../content/index.ts'
import type { Entry, EntryPayload } from '../../social/feed.ts'
import { ApiError } from '../errors.ts'
import { optIntQuery, str, type Route, type RouteContext } from '../routes.ts'

function cidList (value: unknown): CID[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw new ApiError(400, 'BadRequest', 'attachments must be a list of CIDs')
  return value.map(v => parseCid(v))
}

/** The optional `author` of a reply's or like's target, for its notice when we do not hold the target. */
function targetAuthor (b: Record<string, unknown>): { author?: string } {
  return b.author === undefined ? {} : { author: str(b, 'author') }
}

/** An entry's payload with CIDs as strings. */
function jsonPayload (payload: EntryPayload): Record<string, unknown> {
  // A CID serialises as {"/": "bafy…"} (its toJSON); the API gives it as the plain string.
  return JSON.parse(JSON.stringify(payload, (_k, v) => {
    if (CID.asCID(v) != null) return String(v)
    if (v != null && typeof v === 'object' && Object.keys(v).length === 1 && typeof v['/'] === 'string') return v['/']
    return v
  }))
}

/** An entry as the API gives it: id, author, seq, prev, ts, kind and the body's fields. */
export function entryJson (e: Entry): Record<string, unknown> {
  const { body, ...rest } = jsonPayload(e.payload)
  return { id: e.id.toString(), author: e.author, ...rest, ...(body as Record<string, unknown>) }
}

/** A POST that appends one entry to our feed, built from the body. */
function append (path: string, make: (ctx: RouteContext, b: Record<string, unknown>) => Promise<Entry>): Route {
  return { method: 'POST', path, handle: async ctx => entryJson(await make(ctx, await ctx.body())) }
}

/** A POST that changes one of our lists (mutes, blocks) and answers the lists. */
function list (path: string, change: 'setMuted' | 'setBlocked', on: boolean): Route {
  return {
    method: 'POST',
    path,
    handle: async ({ node, body }) => {
      await node.social[change](str(await body(), 'did'), on)
      return node.social.lists()
    }
  }
}

export const socialRoutes: Route[] = [
  { method: 'GET', path: '/api/v0/social/feed', handle: async ({ node, url }) => ({ entries: await node.social.timeline({ limit: optIntQuery(url, 'limit'), before: url.searchParams.get('before') ?? undefined }) }) },
  { method: 'GET', path: '/api/v0/social/following', handle: ({ node }) => ({ following: node.social.following() }) },
  { method: 'GET', path: '/api/v0/social/lists', handle: ({ node }) => node.social.lists() },
  { method: 'GET', path: '/api/v0/social/profile/*', handle: async ({ node, rest }) => await node.social.profile(decodeURIComponent(rest)) },
  {
    method: 'GET',
    path: '/api/v0/social/entries/*',
    handle: async ({ node, rest, url }) => {
      const did = decodeURIComponent(rest)
      const entries = await node.social.entries(did, { from: optIntQuery(url, 'from'), limit: optIntQuery(url, 'limit') })
      return { entries: entries.map(entryJson) }
    }
  },
  append('/api/v0/social/post', async ({ node }, b) => await node.social.post(str(b, 'text'), cidList(b.attachments))),
  append('/api/v0/social/reply', async ({ node }, b) => await node.social.reply(parseCid(b.to), str(b, 'text'), cidList(b.attachments), targetAuthor(b))),
  append('/api/v0/social/like', async ({ node }, b) => await node.social.like(parseCid(b.of), targetAuthor(b))),
  append('/api/v0/social/delete', async ({ node }, b) => await node.social.remove(parseCid(b.of))),
  append('/api/v0/social/follow', async ({ node }, b) => await node.social.follow(str(b, 'did'))),
  append('/api/v0/social/unfollow', async ({ node }, b) => await node.social.unfollow(str(b, 'did'))),
  append('/api/v0/social/profile', async ({ node }, b) => {
    const profile: { name?: string, bio?: string, avatar?: CID } = {}
    if (b.name !== undefined) profile.name = str(b, 'name')
    if (b.bio !== undefined) profile.bio = String(b.bio)
    if (b.avatar !== undefined) profile.avatar = parseCid(b.avatar)
    return await node.social.setProfile(profile)
  }),
  list('/api/v0/social/mute', 'setMuted', true),
  list('/api/v0/social/unmute', 'setMuted', false),
  list('/api/v0/social/block', 'setBlocked', true),
  list('/api/v0/social/unblock', 'setBlocked', false)
]
