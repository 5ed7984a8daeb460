/**
 * `peerverse` commands for content: add files and directories, get them from the swarm, pin,
 * list and collect. Files stream through the local API. Node-only (reads and writes local files).
 */
import { looksLikeLink } from '../net/links.ts'
import { randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ApiClient, ApiError } from '../api/client.ts'
import { client, out, parse, UsageError, type Commands } from './args.ts'

const HELP: Record<string, string> = {
  add: `Usage: peerverse add FILE|DIR [--name NAME] [--no-pin] [--data DIR] [--json]

Imports into the running peer's store and prints the CID (CIDv1; UnixFS, 1 MiB raw leaves,
balanced DAG of up to 1024 links: the unixfs-v1-2025 profile, so IPFS tools agree on it).
A directory gets a directory CID. The content is pinned unless --no-pin, and announced.
An add that fails (a full disk: DiskFullError) removes the blocks it wrote, directories too.`,
  get: `Usage: peerverse get CID|LINK [-o PATH] [--direct-timeout MS] [--data DIR] [--json]

Fetches the whole file or directory from every peer that holds it (every block verified), then
writes it to PATH (default: the CID). A progress bar shows bytes, rate and peers on a terminal.
Ctrl-C stops the download at once (unless another request waits for the same CID); a get
run again resumes from the blocks already fetched. A get that never finds a holder is tried
again on the next starts of the peer, a few times, then given up (peerverse status says so).
A get onto a full disk fails (DiskFullError) and is not resumed; peerverse gc frees its blocks.
Given a content link (peerverse link), the peers it names are asked too, beside the DHT's.
Through a relay only files up to 4 MiB come; a larger one whose holders are reachable only
through relays waits for a direct path (it says so), up to --direct-timeout MS, then fails
with DirectPathPendingError.`,
  link: `Usage: peerverse link CID [--data DIR] [--json]

Prints the content's link: its code (pv:content=CID&peer=...) and the browser client's URL, both
carrying this peer's addresses, so 'peerverse get LINK' on a peer that knows no one fetches it.`,
  pin: `Usage: peerverse pin CID [--name NAME] [--data DIR]
       peerverse unpin CID [--data DIR]`,
  ls: `Usage: peerverse ls [--data DIR] [--json]

Lists pinned content: CID, size and name.`,
  export: `Usage: peerverse export CID [-o FILE.car] [--data DIR] [--json]

Writes the whole DAG of a file or directory as a CARv1 (default: CID.car), streamed from the
peer's trustless gateway (GET /ipfs/CID?format=car) as its blocks are read or fetched from the
swarm. Any IPFS tool can read it and check every block against its CID.`,
  import: `Usage: peerverse import FILE.car [--name NAME] [--data DIR] [--json]

Reads a CARv1 into the store block by block, checking each block against its CID before it is
stored, and pins its roots (printed). A CAR that is malformed (MalformedCarError), carries a block
that does not match its CID (CarBlockMismatchError), lacks blocks of its roots (CarIncompleteError)
or passes a limit (CarTooLargeError) is refused whole: none of its blocks are kept.`,
  gc: `Usage: peerverse gc [--data DIR] [--json]

Removes every block not under a pin or a download in progress, and what a crash or a failed
write left behind. It frees space before it writes anything, so it works on a full disk.`
}

function mib (n: number): string {
  return (n / (1024 * 1024)).toFixed(1)
}

/** Adds one file through the API (streamed); returns its CID. */
async function addFile (api: ApiClient, path: string, name: string | undefined, pin: boolean, importId?: string): Promise<{ cid: string, size: number }> {
  const query = new URLSearchParams({ pin: String(pin), ...(name != null ? { name } : {}), ...(importId != null ? { import: importId } : {}) })
  const body = Readable.toWeb(createReadStream(path)) as unknown as BodyInit
  const res = await ApiClient.check(await api.raw('POST', `/api/v0/content/add?${query.toString()}`, { body, headers: { 'content-type': 'application/octet-stream' } }))
  return await res.json() as { cid: string, size: number }
}

/**
 * Adds a file, or a directory tree bottom-up as one import: when any part fails, the blocks the
 * import wrote are removed again. Returns the root's CID.
 */
export async function addTree (api: ApiClient, path: string, name: string | undefined, pin: boolean): Promise<{ cid: string, size: number }> {
  const info = await lstat(path)
  if (info.isSymbolicLink()) throw new Error(`${path} is a symbolic link; add what it points to`)
  if (info.isFile()) return await addFile(api, path, name, pin)
  const importId = randomUUID()
  try {
    const result = await addTreePart(api, path, name, pin, importId)
    await api.request('POST', '/api/v0/content/import/end', { import: importId })
    return result
  } catch (err) {
    await api.request('POST', '/api/v0/content/import/end', { import: importId, discard: true }).catch(() => {})
    throw err
  }
}

async function addTreePart (api: ApiClient, path: string, name: string | undefined, pin: boolean, importId: string): Promise<{ cid: string, size: number }> {
  const info = await lstat(path)
  if (info.isSymbolicLink()) throw new Error(`${path} is a symbolic link; add what it points to`)
  if (info.isFile()) return await addFile(api, path, name, pin, importId)
  if (!info.isDirectory()) throw new Error(`${path} is not a file or directory`)
  const entries: Array<{ name: string, cid: string }> = []
  for (const child of (await readdir(path)).sort()) {
    const childInfo = await lstat(join(path, child))
    if (childInfo.isSymbolicLink()) continue
    const { cid } = await addTreePart(api, join(path, child), undefined, false, importId)
    entries.push({ name: child, cid })
  }
  return await api.request<{ cid: string, size: number }>('POST', '/api/v0/content/directory', { entries, name, pin, import: importId })
}

async function cmdAdd (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' }, 'no-pin': { type: 'boolean' } })
  if (values.help === true) return out(HELP.add)
  if (positionals.length !== 1) throw new UsageError('add takes one file or directory')
  const path = resolve(positionals[0])
  try {
    await stat(path)
  } catch {
    throw new UsageError(`${positionals[0]} does not exist`)
  }
  const api = await client(values)
  const result = await addTree(api, path, values.name ?? positionals[0].replace(/\/+$/, '').split('/').pop(), values['no-pin'] !== true)
  if (values.json === true) return out(JSON.stringify(result))
  out(result.cid)
}

interface FetchLine {
  progress?: { bytes: number, total: number, peers: number, received: number, waitingForDirectPath?: number }
  done?: boolean
  error?: string
  message?: string
  cid?: string
  kind?: 'file' | 'directory'
  size?: number
  fetchedBlocks?: number
}

/** Writes a fetched (local) CID to `path`: a file through a temporary name, or a directory tree. */
async function writeOut (api: ApiClient, cid: string, path: string, kind: 'file' | 'directory', signal?: AbortSignal): Promise<void> {
  if (kind === 'directory') {
    await mkdir(path, { recursive: true })
    const { entries } = await api.request<{ entries: Array<{ name: string, cid: string }> }>('GET', `/api/v0/content/ls/${cid}`)
    for (const e of entries) {
      if (e.name.includes('/') || e.name === '.' || e.name === '..' || e.name === '' || e.name.includes('\0')) throw new Error(`refusing unsafe name ${JSON.stringify(e.name)} in ${cid}`)
      const stat = await api.request<{ kind: 'file' | 'directory' }>('GET', `/api/v0/content/stat/${e.cid}`)
      await writeOut(api, e.cid, join(path, e.name), stat.kind, signal)
    }
    return
  }
  const tmp = `${path}.partial`
  const res = await ApiClient.check(await api.raw('GET', `/content/${cid}`, { signal }))
  if (res.body == null) throw new Error('empty answer')
  try {
    await pipeline(Readable.fromWeb(res.body as never), createWriteStream(tmp))
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}


async function cmdLink (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.link)
  if (positionals.length !== 1) throw new UsageError('link takes one CID')
  const link = await (await client(values)).request<{ code: string, link: string }>('GET', `/api/v0/content/link?cid=${encodeURIComponent(positionals[0])}`)
  out(values.json === true ? JSON.stringify(link) : `${link.code}\n${link.link}`)
}

async function cmdGet (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { output: { type: 'string', short: 'o' }, 'direct-timeout': { type: 'string' } })
  if (values.help === true) return out(HELP.get)
  if (positionals.length !== 1) throw new UsageError('get takes one CID or link')
  const directTimeout = values['direct-timeout']
  const directPathTimeoutMs = directTimeout === undefined ? undefined : Number(directTimeout)
  if (directPathTimeoutMs !== undefined && !(Number.isSafeInteger(directPathTimeoutMs) && directPathTimeoutMs > 0)) throw new UsageError('--direct-timeout takes a whole number of milliseconds')
  const target = { ...(looksLikeLink(positionals[0]) ? { link: positionals[0] } : { cid: positionals[0] }), ...(directPathTimeoutMs !== undefined ? { directPathTimeoutMs } : {}) }
  const api = await client(values)
  // Ctrl-C aborts the request, and the peer stops the download when the request goes.
  const controller = new AbortController()
  const interrupt = (): void => { controller.abort(new Error('interrupted')); process.exitCode = 130 }
  process.once('SIGINT', interrupt)
  try {
    await fetchAndWrite(api, target, values, controller.signal)
  } catch (err) {
    if (controller.signal.aborted) { process.stderr.write('\ninterrupted; the download stopped\n'); return }
    throw err
  } finally {
    process.off('SIGINT', interrupt)
  }
}

async function fetchAndWrite (api: ApiClient, target: ({ cid: string } | { link: string }) & { directPathTimeoutMs?: number }, values: { output?: string, json?: boolean }, signal: AbortSignal): Promise<void> {
  const res = await ApiClient.check(await api.raw('POST', '/api/v0/content/fetch', { body: JSON.stringify(target), headers: { 'content-type': 'application/json' }, signal }))
  const tty = process.stderr.isTTY && values.json !== true
  const started = Date.now()
  let done: FetchLine | undefined
  let waiting = 0
  let buffer = ''
  for await (const chunk of (res.body as unknown as AsyncIterable<Uint8Array>)) {
    buffer += Buffer.from(chunk).toString('utf8')
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffer.slice(0, nl)) as FetchLine
      buffer = buffer.slice(nl + 1)
      if (line.error != null) throw new Error(`${line.error}: ${line.message ?? ''}`)
      if (line.done === true) done = line
      const w = line.progress?.waitingForDirectPath ?? 0
      if (w !== waiting) {
        waiting = w
        if (w > 0) process.stderr.write(`${tty ? '\n' : ''}waiting for a direct path to ${w} holder${w === 1 ? '' : 's'} reachable only through a relay\n`)
      }
      if (line.progress != null && tty) {
        const p = line.progress
        const rate = p.received / Math.max((Date.now() - started) / 1000, 0.001)
        process.stderr.write(`\r  ${mib(p.bytes)} / ${mib(p.total)} MiB  ${mib(rate)} MiB/s  ${p.peers} peer${p.peers === 1 ? '' : 's'}   `)
      }
    }
  }
  if (tty) process.stderr.write('\n')
  if (done?.kind == null || done.cid == null) throw new Error('the peer ended the fetch without an answer')
  const cid = done.cid
  const path = resolve(values.output ?? cid)
  await writeOut(api, cid, path, done.kind, signal)
  if (values.json === true) return out(JSON.stringify({ cid, path, kind: done.kind, size: done.size, fetchedBlocks: done.fetchedBlocks }))
  out(`${cid} -> ${path} (${done.size ?? 0} bytes)`)
}

async function cmdPin (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' } })
  if (values.help === true) return out(HELP.pin)
  if (positionals.length !== 1) throw new UsageError('pin takes one CID')
  const info = await (await client(values)).request<{ cid: string, size: number }>('POST', '/api/v0/content/pin', { cid: positionals[0], name: values.name })
  if (values.json === true) return out(JSON.stringify(info))
  out(`pinned ${info.cid} (${info.size} bytes)`)
}

async function cmdUnpin (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.pin)
  if (positionals.length !== 1) throw new UsageError('unpin takes one CID')
  const { unpinned } = await (await client(values)).request<{ unpinned: boolean }>('POST', '/api/v0/content/unpin', { cid: positionals[0] })
  if (values.json === true) return out(JSON.stringify({ unpinned }))
  out(unpinned ? `unpinned ${positionals[0]}` : `${positionals[0]} was not pinned`)
}

async function cmdLs (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.ls)
  const { pins } = await (await client(values)).request<{ pins: Array<{ cid: string, size: number, name?: string }> }>('GET', '/api/v0/content/pins')
  if (values.json === true) return out(JSON.stringify(pins))
  if (pins.length === 0) out('  (nothing pinned)')
  for (const p of pins) out(`${p.cid}  ${p.size}${p.name != null ? `  ${p.name}` : ''}`)
}

async function cmdGc (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.gc)
  const result = await (await client(values)).request<{ removed: number, freed: number, strays?: number }>('POST', '/api/v0/content/gc', {})
  if (values.json === true) return out(JSON.stringify(result))
  out(`removed ${result.removed} blocks${(result.strays ?? 0) > 0 ? ` and ${result.strays ?? 0} leftover files` : ''}, freed ${result.freed} bytes`)
}

async function cmdExport (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { output: { type: 'string', short: 'o' } })
  if (values.help === true) return out(HELP.export)
  if (positionals.length !== 1) throw new UsageError('export takes one CID')
  const cid = positionals[0]
  const path = resolve(values.output ?? `${cid}.car`)
  const api = await client(values)
  const controller = new AbortController()
  const interrupt = (): void => { controller.abort(new Error('interrupted')); process.exitCode = 130 }
  process.once('SIGINT', interrupt)
  const tmp = `${path}.partial`
  try {
    const res = await ApiClient.check(await api.raw('GET', `/ipfs/${encodeURIComponent(cid)}?format=car`, { headers: { accept: 'application/vnd.ipld.car; version=1; order=dfs; dups=n' }, signal: controller.signal }))
    if (res.body == null) throw new Error('empty answer')
    await pipeline(Readable.fromWeb(res.body as never), createWriteStream(tmp))
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    if (controller.signal.aborted) { process.stderr.write('interrupted; nothing written\n'); return }
    throw err
  } finally {
    process.off('SIGINT', interrupt)
  }
  const { size } = await stat(path)
  if (values.json === true) return out(JSON.stringify({ cid, path, bytes: size }))
  out(`${cid} -> ${path} (${size} bytes)`)
}

async function cmdImport (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' } })
  if (values.help === true) return out(HELP.import)
  if (positionals.length !== 1) throw new UsageError('import takes one CAR file')
  const path = resolve(positionals[0])
  try {
    if (!(await stat(path)).isFile()) throw new Error()
  } catch {
    throw new UsageError(`${positionals[0]} is not a file`)
  }
  const api = await client(values)
  const query = values.name != null ? `?${new URLSearchParams({ name: values.name }).toString()}` : ''
  const body = Readable.toWeb(createReadStream(path)) as unknown as BodyInit
  let res: Response
  try {
    res = await ApiClient.check(await api.raw('POST', `/api/v0/content/import-car${query}`, { body, headers: { 'content-type': 'application/vnd.ipld.car' } }))
  } catch (err) {
    // The refusal's name says why (CarBlockMismatchError ...): keep it in the one line we print.
    if (err instanceof ApiError) throw new Error(`${err.code}: ${err.message}`)
    throw err
  }
  const result = await res.json() as { roots: string[], blocks: number, bytes: number }
  if (values.json === true) return out(JSON.stringify(result))
  for (const root of result.roots) out(root)
  process.stderr.write(`imported ${result.blocks} blocks (${result.bytes} bytes), pinned ${result.roots.length} root${result.roots.length === 1 ? '' : 's'}\n`)
}

export const contentCommands: Commands = {
  add: { run: cmdAdd, summary: 'import a file or directory into the store; prints its CID' },
  get: { run: cmdGet, summary: 'fetch a CID or content link from the swarm and write it to a file or directory' },
  link: { run: cmdLink, summary: "print a content link (the CID and this peer's addresses)" },
  pin: { run: cmdPin, summary: 'keep a CID (fetching it first) / unpin: let it be collected' },
  unpin: { run: cmdUnpin },
  ls: { run: cmdLs, summary: 'list pinned content' },
  gc: { run: cmdGc, summary: 'remove unpinned blocks from the store' },
  export: { run: cmdExport, summary: 'write a CID\'s whole DAG to a CAR file (CARv1, any IPFS tool reads it)' },
  import: { run: cmdImport, summary: 'read a CAR file into the store, every block checked; pins and prints its roots' }
}
