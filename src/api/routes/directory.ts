/**
 * Node-only: the API's routes for the directory of live spaces: the ranked listings, our own
 * listings' publishing and unpublishing, and the directory's counts (what it holds and dropped).
 */
import { ApiError } from '../errors.ts'
import { optStr, str, type Route } from '../routes.ts'

/** HTTP status of the directory's refusals (the rest as the server maps them). */
const STATUS: Record<string, number> = {
  PrivateSpaceListingError: 403,
  NotListingOwnerError: 403,
  TooManyListingsError: 409,
  OversizedListingError: 413,
  InvalidListingError: 400
}

async function mapped<T> (run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (err) {
    const e = err as Error
    const status = STATUS[e.name]
    if (status != null) throw new ApiError(status, e.name, e.message)
    throw err
  }
}

function tags (value: unknown): string[] | undefined {
  if (value === undefined || value === null) return undefined
  if (!Array.isArray(value) || !value.every(t => typeof t === 'string')) throw new ApiError(400, 'BadRequest', 'tags must be a list of strings')
  return value
}

export const directoryRoutes: Route[] = [
  { method: 'GET', path: '/api/v0/directory', handle: ({ node }) => ({ listings: node.directory.list() }) },
  { method: 'GET', path: '/api/v0/directory/status', handle: ({ node }) => node.directory.status() },
  {
    method: 'POST',
    path: '/api/v0/directory/publish',
    handle: async ({ node, body }) => {
      const b = await body()
      return await mapped(async () => node.directory.publish(str(b, 'space'), {
        description: optStr(b.description, 'description'),
        tags: tags(b.tags),
        thumbnail: optStr(b.thumbnail, 'thumbnail')
      }))
    }
  },
  {
    method: 'POST',
    path: '/api/v0/directory/unpublish',
    handle: async ({ node, body }) => {
      await mapped(async () => node.directory.unpublish(str(await body(), 'space')))
      return { ok: true, published: node.directory.published() }
    }
  }
]

