/**
 * Node-only: the API's routing. Each capability contributes a table of routes (src/api/routes/*.ts);
 * the server tries them in order. Parameter checks shared by the tables live here, each throwing an
 * ApiError that names the bad field.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { PeerverseNode } from '../node/node.ts'
import { ApiError } from './errors.ts'

export interface RouteContext {
  node: PeerverseNode
  req: IncomingMessage
  res: ServerResponse
  url: URL
  /** What a `*` in the route's path matched (still percent-encoded). */
  rest: string
  /** The JSON body (read once, bounded). */
  body: () => Promise<Record<string, unknown>>
  /** Deadline of a DHT lookup or dial the request starts. */
  signal: AbortSignal
}

export interface Route {
  method: 'GET' | 'POST'
  /** An exact path, or a prefix ending in `*`. */
  path: string
  /** The answer, sent as JSON; a route that writes the response itself sets `raw`. */
  handle: (ctx: RouteContext) => unknown
  raw?: boolean
}

/** The route for a method and path, with what its `*` matched. */
export function findRoute (routes: readonly Route[], method: string, path: string): { route: Route, rest: string } | undefined {
  for (const route of routes) {
    if (route.method !== method && !(route.method === 'GET' && method === 'HEAD' && route.raw === true)) continue
    if (route.path.endsWith('*')) {
      const prefix = route.path.slice(0, -1)
      if (path.startsWith(prefix)) return { route, rest: path.slice(prefix.length) }
    } else if (route.path === path) {
      return { route, rest: '' }
    }
  }
  return undefined
}

/** A required non-empty string field. */
export function str (body: Record<string, unknown>, key: string): string {
  const v = body[key]
  if (typeof v !== 'string' || v === '') throw new ApiError(400, 'BadRequest', `${key} must be a non-empty string`)
  return v
}

export function optInt (value: unknown, name: string): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new ApiError(400, 'BadRequest', `${name} must be a non-negative integer`)
  return value
}

export function optStr (value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw new ApiError(400, 'BadRequest', `${name} must be a string`)
  return value
}

/** A vector of `n` finite numbers from JSON. */
export function vec (value: unknown, n: number, name: string): number[] {
  if (!Array.isArray(value) || value.length !== n || !value.every(x => typeof x === 'number' && Number.isFinite(x))) {
    throw new ApiError(400, 'BadRequest', `${name} must be ${n} finite numbers`)
  }
  return value as number[]
}

export function intParam (value: string, name: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 0) throw new ApiError(400, 'BadRequest', `${name} must be a non-negative integer`)
  return n
}

/** An optional integer query parameter. */
export function optIntQuery (url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name)
  return v == null ? undefined : intParam(v, name)
}

/** A percent-decoded path segment. */
export function decoded (value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    throw new ApiError(400, 'InvalidPath', 'path is not valid percent-encoding')
  }
}
