/**
 * A small client of the local API, for the CLI and tests: finds the running peer through the data
 * dir (api.json and the token) and speaks JSON to it.
 */
import { ApiError } from './errors.ts'
import { readApiInfo } from './server.ts'

export class PeerNotRunningError extends Error {
  name = 'PeerNotRunningError'
}

export { ApiError }

export class ApiClient {
  readonly url: string
  readonly token: string

  constructor (url: string, token: string) {
    this.url = url
    this.token = token
  }

  /** The client of the peer running on `dataDir`; PeerNotRunningError when none is. */
  static async forDataDir (dataDir: string): Promise<ApiClient> {
    try {
      const info = await readApiInfo(dataDir)
      return new ApiClient(info.url, info.token)
    } catch {
      throw new PeerNotRunningError(`no running peer found for ${dataDir} (start one: peerverse start --data ${dataDir})`)
    }
  }

  /** A raw request (streamed bodies and answers); the caller reads the Response. */
  async raw (method: string, path: string, init: { body?: BodyInit, headers?: Record<string, string>, signal?: AbortSignal } = {}): Promise<Response> {
    try {
      return await fetch(this.url + path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...init.headers },
        body: init.body,
        signal: init.signal,
        ...(init.body != null ? { duplex: 'half' } : {})
      } as RequestInit)
    } catch (err) {
      throw new PeerNotRunningError(`the peer's API at ${this.url} does not answer (${(err as Error).message})`)
    }
  }

  /** Throws the API's error for a failed raw response. */
  static async check (res: Response): Promise<Response> {
    if (res.ok) return res
    let json: Record<string, unknown> = {}
    try { json = await res.json() as Record<string, unknown> } catch {}
    throw new ApiError(res.status, String(json.error ?? res.status), String(json.message ?? res.statusText))
  }

  async request<T = unknown> (method: string, path: string, body?: unknown, options: { signal?: AbortSignal } = {}): Promise<T> {
    let res: Response
    try {
      res = await fetch(this.url + path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body != null ? { 'content-type': 'application/json' } : {}) },
        body: body != null ? JSON.stringify(body) : undefined,
        signal: options.signal
      })
    } catch (err) {
      throw new PeerNotRunningError(`the peer's API at ${this.url} does not answer (${(err as Error).message})`)
    }
    const json = await res.json() as Record<string, unknown>
    if (!res.ok) throw new ApiError(res.status, String(json.error), String(json.message))
    return json as T
  }
}
