/**
 * A small client of the local API, for the CLI and tests: finds the running peer through the data
 * dir (api.json and the token) and speaks JSON to it. Before the token leaves this process the
 * client makes sure the process on the port is our peer: the pid in api.json must be alive, and
 * the peer must answer a fresh challenge only the token's holder can (auth.ts). Nothing of that
 * check is kept beyond this client object.
 */
import { API_INFO_FILE, API_PROOF_PATH, API_PROOF_TIMEOUT_MS, checkApiProof, proofNonce } from './auth.ts'
import { ApiError } from './errors.ts'
import { readApiInfo } from './info.ts'

export class PeerNotRunningError extends Error {
  name = 'PeerNotRunningError'
}

/** The process on the API's port did not prove it is the peer that holds the token. */
export class PeerProofError extends Error {
  name = 'PeerProofError'
}

export { ApiError }

/** True when a process with this id runs (one of another user counts as running). */
function pidAlive (pid: unknown): boolean {
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export class ApiClient {
  readonly url: string
  readonly token: string
  private proven?: Promise<void>

  constructor (url: string, token: string) {
    this.url = url
    this.token = token
  }

  /**
   * The client of the peer running on `dataDir`, already proven to be our peer;
   * PeerNotRunningError when none is (no api.json, its pid dead, or the proof failing).
   */
  static async forDataDir (dataDir: string): Promise<ApiClient> {
    let info: Awaited<ReturnType<typeof readApiInfo>>
    try {
      info = await readApiInfo(dataDir)
    } catch {
      throw new PeerNotRunningError(`no peer is running for ${dataDir} (start one: peerverse start --data ${dataDir})`)
    }
    const stale = (why: string): PeerNotRunningError =>
      new PeerNotRunningError(`no peer is running for ${dataDir} (stale ${API_INFO_FILE}: ${why}; start one: peerverse start --data ${dataDir})`)
    if (!pidAlive(info.pid)) throw stale(`its process ${String(info.pid)} has exited`)
    const client = new ApiClient(info.url, info.token)
    try {
      await client.prove()
    } catch (err) {
      throw stale((err as Error).message)
    }
    return client
  }

  /**
   * Checks, once per client, that the process at `url` holds the token, without sending it:
   * a fresh nonce out, HMAC-SHA-256 under the token back. PeerProofError or PeerNotRunningError.
   */
  async prove (): Promise<void> {
    this.proven ??= this.challenge()
    try {
      await this.proven
    } catch (err) {
      this.proven = undefined
      throw err
    }
  }

  private async challenge (): Promise<void> {
    const nonce = proofNonce()
    let res: Response
    try {
      res = await fetch(`${this.url}${API_PROOF_PATH}?nonce=${nonce}`, { redirect: 'manual', signal: AbortSignal.timeout(API_PROOF_TIMEOUT_MS) })
    } catch (err) {
      throw new PeerNotRunningError(`the peer's API at ${this.url} does not answer (${fetchFailure(err)})`)
    }
    let answer: unknown
    try {
      answer = res.ok ? ((await res.json()) as { proof?: unknown } | null)?.proof : undefined
    } catch {}
    if (!checkApiProof(this.token, this.url, nonce, answer)) {
      throw new PeerProofError(`the process at ${this.url} did not prove it is this data dir's peer (HTTP ${res.status})`)
    }
  }

  /** The event WebSocket's address, with the token in the query (a WebSocket takes no header); proves the peer first. */
  async eventsUrl (): Promise<string> {
    await this.prove()
    return `${this.url.replace(/^http/, 'ws')}/api/v0/events?token=${encodeURIComponent(this.token)}`
  }

  /** A raw request (streamed bodies and answers); the caller reads the Response. */
  async raw (method: string, path: string, init: { body?: BodyInit, headers?: Record<string, string>, signal?: AbortSignal } = {}): Promise<Response> {
    await this.prove()
    try {
      return await fetch(this.url + path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...init.headers },
        body: init.body,
        signal: init.signal,
        redirect: 'manual',
        ...(init.body != null ? { duplex: 'half' } : {})
      } as RequestInit)
    } catch (err) {
      throw new PeerNotRunningError(`the peer's API at ${this.url} does not answer (${fetchFailure(err)})`)
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
    await this.prove()
    let res: Response
    try {
      res = await fetch(this.url + path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body != null ? { 'content-type': 'application/json' } : {}) },
        body: body != null ? JSON.stringify(body) : undefined,
        signal: options.signal,
        redirect: 'manual'
      })
    } catch (err) {
      throw new PeerNotRunningError(`the peer's API at ${this.url} does not answer (${fetchFailure(err)})`)
    }
    const json = await res.json() as Record<string, unknown>
    if (!res.ok) throw new ApiError(res.status, String(json.error), String(json.message))
    return json as T
  }
}

/** Why a fetch failed: undici's "fetch failed" keeps the reason (ECONNRESET, ECONNREFUSED, …) in its cause. */
function fetchFailure (err: unknown): string {
  const e = err as Error & { cause?: { code?: string, message?: string } }
  const cause = e.cause == null ? '' : `: ${e.cause.code ?? ''}${e.cause.code != null && e.cause.message != null ? ' ' : ''}${e.cause.message ?? ''}`
  return `${e.message ?? String(err)}${cause}`
}
