/**
 * Ledger benchmark: four validators as four `peerverse start` processes on loopback (this
 * machine's cores shared between them), loaded by this process, which is not a validator. It
 * prints figures and asserts nothing.
 *
 * 1. The machine's Ed25519 verification rate on one core (node:crypto through ed25519Verify), and
 *    the rate of a full decodeTx (DAG-CBOR decode, canonical check, signature, CID), both on the
 *    signed transfers used below, measured before the validators start.
 * 2. An open-loop sweep: for each offered rate, transfers pre-signed by their own set of funded
 *    genesis accounts (consecutive nonces, so refusals in one step leave no nonce gap in the next) are
 *    offered at that rate, each sender through one of the four validators' APIs (its gateway, as a
 *    wallet talks to its own peer; HTTP keep-alive): every
 *    20 ms tick, each validator gets that tick's transactions in one POST /api/v0/ledger/submit-batch,
 *    as a gateway relaying its users' transactions would (BENCH_SUBMIT=single: one POST
 *    /api/v0/ledger/submit per transaction, 5 ms ticks). Each validator's `ledger:block` events arrive over its API WebSocket;
 *    the block's transactions come from GET /api/v0/ledger/block/:h. A transaction's latency is
 *    the time the validator it was submitted to announced the block holding it, less the time it
 *    was due (its place in the open-loop schedule, so the wait for its tick counts). Committed tx/s is every transaction in the blocks holding the step's
 *    transactions, less the first block, over the time from that first block to the last, so a
 *    latency longer than the step does not hide throughput. A step after which no block
 *    comes for 10 s with transactions waiting ends the sweep (the chain has stalled), and the
 *    validators' logged errors are printed. The load average is printed too: other work on the
 *    cores changes every figure; the validators' CPU time per committed transaction changes less.
 *    A transaction refused as MempoolFullError (the chain's back-pressure) is held by its client,
 *    with its sender's later ones behind it (so no sender skips a nonce), and offered again, alone,
 *    once its validator announces the next block, as the error says; a client also holds its
 *    sender's next while one request is unanswered or MAX_OUTSTANDING_PER_SENDER are accepted and
 *    in no block yet (a wallet does not run further ahead of the chain). A held transaction's
 *    latency still counts from when it was first due, and "p99 acc" counts from the answer that
 *    accepted it.
 *    Each validator's per-height record (rounds, timeouts by step, the decided proposal's size
 *    and times, build and check times, mempool size; the ledger:block event) gives rounds per
 *    height per step, the share of heights with a timeout, and the slowest heights: these say
 *    why a height was slow whatever else loads the machine.
 * 3. The share of the verification ceiling: every committed transfer is verified at least once
 *    per validator, so committed tx/s x 4 verifications compete for the machine's cores, which
 *    verify at most cores x the single-core rate.
 *
 * Targets: 2,000 committed transfers/s with p50 finality under 1 s. For contrast, CometBFT's own
 * QA saturates near 400 tx/s on its 200-node testnet.
 *
 * Everything random comes from one seeded PRNG (BENCH_SEED, default 1), sender keys included.
 * BENCH_LEDGER_RUNS (default 3) sweeps run, each on a fresh chain; the summary gives each step's
 * worst figures over all runs and names the highest offered rate whose p99 is under 1 s in every
 * run (from when each transaction was due, and from acceptance).
 * BENCH_RATES (comma-separated tx/s) and BENCH_STEP_SECONDS change the sweep; BENCH_PROFILE=1
 * runs validator 1 under --cpu-prof and keeps the profile. Results go to stdout, progress to
 * stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import * as dagCbor from '@ipld/dag-cbor'
import WebSocket from 'ws'
import { MAX_API_SUBMIT_BATCH_TXS, readApiInfo } from '../src/api/server.ts'
import { didFromPublicKey, publicKeyFromDid } from '../src/identity/did.ts'
import { recordId } from '../src/identity/record.ts'
import { ed25519KeyFromSeed, ed25519Verify, type Ed25519Key } from '../src/identity/ed25519.ts'
import { initIdentity } from '../src/identity/keystore.ts'
import { DEVNET_STAKE, FAUCET_GRANT, FAUCET_SUPPLY, faucetDid, genesisJson } from '../src/ledger/genesis.ts'
import { MAX_TXS_PER_SENDER } from '../src/ledger/mempool.ts'
import { COMMIT_PAUSE_MS, MAX_TXS_PER_BLOCK } from '../src/ledger/service.ts'
import type { Genesis } from '../src/ledger/state.ts'
import { decodeTx, signTx } from '../src/ledger/tx.ts'
import type { HeightRecord } from '../src/ledger/height-record.ts'
import { seeded } from './lib.ts'

const ROOT = resolve(import.meta.dirname, '..')
const CLI = join(ROOT, 'src/cli/main.ts')

const VALIDATORS = 4
/** Offered rates of the sweep (tx/s), each for STEP_SECONDS. */
// Past 2,000: committing at least the target takes offering more than it, and the last steps find the limit.
const RATES = (process.env.BENCH_RATES ?? '100,250,500,1000,1500,2000,2100,2200,2400').split(',').map(Number)
/** The issue's target: committed transfers per second, with p50 finality under TARGET_P50_MS. */
const TARGET_TX_PER_S = 2000
const TARGET_P50_MS = 1000
const STEP_SECONDS = Number(process.env.BENCH_STEP_SECONDS ?? 15)
/** Funded senders per step: each step signs with its own accounts. Below MAX_TXS_PER_SENDER x this the backlog is unconstrained. */
const SENDERS_PER_STEP = 200
const SENDER_BALANCE = 1_000_000_000n
/** After a step, wait this long at most for its accepted transactions to commit. */
const DRAIN_DEADLINE_MS = 20_000
/** HTTP connections per validator API. */
const SOCKETS_PER_VALIDATOR = 16
/** 'batch' (default): each tick's transactions for a validator go in one submit-batch request; 'single': one request each. */
const SUBMIT_MODE = process.env.BENCH_SUBMIT === 'single' ? 'single' : 'batch'
/** Transactions in one submit-batch request at most (the API's MAX_API_SUBMIT_BATCH_TXS). */
const SUBMIT_BATCH = MAX_API_SUBMIT_BATCH_TXS
/**
 * Offering ticks (ms): each sends every transaction due by then (a gateway's batching window in
 * batch mode). A transaction's latency counts from when it was due, so the wait for its tick is in it.
 */
const TICK_MS = SUBMIT_MODE === 'batch' ? 20 : 5
/** How long each Ed25519 measurement runs. */
const VERIFY_MS = 2_000
const START_DEADLINE_MS = 180_000

const SEED = Number(process.env.BENCH_SEED ?? 1)
const PROFILE = process.env.BENCH_PROFILE === '1'
/** When set, each validator's stderr is written to v<i>.log there (set DEBUG=peerverse:ledger too). */
const LOG_DIR = process.env.BENCH_LOG_DIR

// ---------------------------------------------------------------------------------------------
// small helpers

const rand = seeded(SEED)

const progress = (line: string): void => { process.stderr.write(`[bench] ${line}\n`) }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Nearest-rank percentile of an unsorted sample. */
function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length)))
  return sorted[rank - 1]
}

const fmt = (n: number, digits = 0): string => Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
const pad = (s: string, n: number): string => s.padStart(n)

/** CPU seconds (user + system) a process has used, from /proc (Linux); NaN elsewhere. */
async function procCpuSeconds (pid: number | undefined): Promise<number> {
  if (pid == null) return NaN
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}

/** A key whose seed is derived from the bench seed and a label. */
function seededKey (label: string): Ed25519Key {
  return ed25519KeyFromSeed(createHash('sha256').update(`peerverse/bench/ledger/${SEED}/${label}`).digest())
}

// ---------------------------------------------------------------------------------------------
// validators

interface Validator {
  index: number
  proc: ChildProcess
  dataDir: string
  did: string
  addr: string
  url: string
  token: string
  agent: Agent
  ws?: WebSocket
  stderr: string
  /** performance.now() at which this validator announced each height. */
  commits: Map<number, number>
  /** What this validator recorded of each height (rounds, timeouts, proposal size and times). */
  records: Map<number, HeightRecord>
}

async function startValidator (index: number, dataDir: string, genesisPath: string, bootstrap: string[], profileDir?: string): Promise<Validator> {
  const args = [
    ...(profileDir != null ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    CLI, 'start', '--data', dataDir, '--api', '127.0.0.1:0', '--dht-mode', 'server', '--no-mdns', '--json',
    '--listen', '/ip4/127.0.0.1/tcp/0', '--genesis', genesisPath,
    ...bootstrap.flatMap(b => ['--bootstrap', b])
  ]
  // The ledger's own errors (a step that throws) are logged only under DEBUG; keep them, to report.
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBUG: process.env.DEBUG ?? 'peerverse:ledger:error' } })
  let stderr = ''
  proc.stderr!.on('data', d => { stderr = (stderr + String(d)).slice(-4000) })
  if (LOG_DIR != null) proc.stderr!.pipe(createWriteStream(join(LOG_DIR, `v${index}.log`)))
  const ready = await new Promise<{ did: string, addresses: string[] }>((resolve, reject) => {
    let buf = ''
    const onData = (d: Buffer): void => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        proc.stdout!.off('data', onData)
        try { resolve(JSON.parse(buf.slice(0, nl))) } catch (err) { reject(err) }
      }
    }
    proc.stdout!.on('data', onData)
    proc.once('exit', code => { reject(new Error(`validator ${index} exited with ${code} before ready: ${stderr}`)) })
  })
  proc.stdout!.resume()
  const info = await readApiInfo(dataDir)
  const addr = ready.addresses.find(a => a.includes('/tcp/') && !a.includes('/ws') && !a.includes('p2p-circuit')) ?? ready.addresses[0]
  const v: Validator = {
    index, proc, dataDir, did: ready.did, addr, url: info.url, token: info.token,
    agent: new Agent({ keepAlive: true, maxSockets: SOCKETS_PER_VALIDATOR }),
    get stderr () { return stderr },
    commits: new Map(),
    records: new Map()
  }
  return v
}

/** One HTTP call to a validator's API; resolves with the status and the parsed body. */
async function api<T> (v: Validator, method: string, path: string, body?: string): Promise<{ status: number, body: T }> {
  return await new Promise((resolve, reject) => {
    const url = new URL(path, v.url)
    const req = request(url, {
      method,
      agent: v.agent,
      headers: { authorization: `Bearer ${v.token}`, ...(body != null ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) }
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed: unknown
        try { parsed = JSON.parse(text) } catch { parsed = text }
        resolve({ status: res.statusCode ?? 0, body: parsed as T })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Subscribes to a validator's events; calls `onBlock(height)` on each `ledger:block`. */
async function listen (v: Validator, onBlock: (v: Validator, height: number, txs: number) => void): Promise<void> {
  const ws = new WebSocket(`${v.url.replace(/^http/, 'ws')}/api/v0/events?token=${encodeURIComponent(v.token)}`)
  v.ws = ws
  ws.on('message', (data: Buffer) => {
    const at = performance.now()
    // Other events come this way too: skip all but block announcements before parsing, so this
    // process takes less of the cores the validators share.
    if (!data.subarray(0, 32).toString().startsWith('{"type":"ledger:block"')) return
    let evt: { type?: string, height?: number, txs?: number, record?: HeightRecord }
    try { evt = JSON.parse(data.toString()) } catch { return }
    if (evt.type === 'ledger:block' && typeof evt.height === 'number') {
      v.commits.set(evt.height, at)
      if (evt.record != null) v.records.set(evt.height, evt.record)
      onBlock(v, evt.height, evt.txs ?? 0)
    }
  })
  ws.on('error', err => { progress(`validator ${v.index} event socket: ${err.message}`) })
  await once(ws, 'open')
}

// ---------------------------------------------------------------------------------------------
// the load

interface Sent {
  b64: string
  step: number
  /** Validator index it goes to: its sender's gateway (a wallet talks to one peer). */
  to: number
  /** Its sender's index within the step. */
  from: number
  /** The height its validator had announced when it was last refused as full: offered again once a later block is announced. */
  refusedAt?: number
  submitted: number
  accepted: boolean
  /** performance.now() of the answer that accepted it. */
  acceptedAt?: number
  /** Times refused as MempoolFullError (offered again after the next block, as the error says, so no nonce is skipped). */
  full: number
  /** Refused as MempoolFullError at the last try: waits to be offered again. */
  retry?: boolean
  error?: string
  height?: number
}

/** The last height a validator announced. */
function head (v: Validator): number {
  let h = 0
  for (const k of v.commits.keys()) if (k > h) h = k
  return h
}

interface Step {
  rate: number
  txs: Sent[]
  start: number
  end: number
}

/** A 'submit' answer's error names that still mean the transaction is in the mempool. */
const ALREADY_IN = new Set(['DuplicateTxError'])

/**
 * Hands transactions to a validator's API: one POST /api/v0/ledger/submit each (BENCH_SUBMIT=single),
 * or one POST /api/v0/ledger/submit-batch for them all (the default: a gateway relaying its users'
 * transactions). Marks each accepted, or refused with the API's error name.
 */
/**
 * Transactions one sender's client has accepted and not yet seen in a block, at most: a wallet
 * does not run further ahead of the chain (half the mempool's per-sender limit); the next wait
 * with their client, their latency counting from when they were due.
 */
const MAX_OUTSTANDING_PER_SENDER = MAX_TXS_PER_SENDER / 2
/** Accepted and not yet in a block, by `${step}/${from}`. */
const outstanding = new Map<string, number>()
const senderKey = (sent: Sent): string => `${sent.step}/${sent.from}`

/** BENCH_TRACE=1: told of each transaction refused with NonceGapError (its sender has many waiting). */
let onNonceGap: ((sent: Sent) => void) | undefined

async function submit (v: Validator, group: Sent[]): Promise<void> {
  // A keep-alive socket the server closed while idle resets the next request on it: once, send again.
  const post = async <T>(path: string, body: string): Promise<{ status: number, body: T }> => {
    return await api<T>(v, 'POST', path, body).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET') throw err
      return await api<T>(v, 'POST', path, body)
    })
  }
  const settle = (sent: Sent, error: string | undefined): void => {
    sent.retry = false
    if (error == null || ALREADY_IN.has(error)) { sent.accepted = true; sent.acceptedAt = performance.now(); if (sent.height == null) outstanding.set(senderKey(sent), (outstanding.get(senderKey(sent)) ?? 0) + 1) } else if (error === 'MempoolFullError') { sent.full++; sent.retry = true; sent.refusedAt = head(v) } else sent.error = error
    if (error === 'NonceGapError') onNonceGap?.(sent)
  }
  try {
    if (SUBMIT_MODE === 'single') {
      await Promise.all(group.map(async sent => {
        const res = await post<{ error?: string }>('/api/v0/ledger/submit', JSON.stringify({ tx: sent.b64 }))
        settle(sent, res.status === 200 ? undefined : res.body?.error ?? `HTTP ${res.status}`)
      }))
      return
    }
    const res = await post<{ results?: Array<{ error?: string }>, error?: string }>('/api/v0/ledger/submit-batch', JSON.stringify({ txs: group.map(s => s.b64) }))
    group.forEach((sent, i) => { settle(sent, res.status === 200 ? res.body.results?.[i]?.error : res.body?.error ?? `HTTP ${res.status}`) })
  } catch (err) {
    for (const sent of group) if (!sent.accepted) sent.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message
  }
}

/** One step of one run, for the summary over all runs. */
interface Row { rate: number, committed: number, p50: number, p99: number, max: number, p99Accepted: number, rounds: number, full: number, all: boolean }

async function main (runRows: Row[]): Promise<void> {
  const cores = cpus().length
  const loadStart = loadavg()[0]
  const work = await mkdtemp(join(tmpdir(), 'peerverse-bench-ledger-'))
  const profileDir = PROFILE ? await mkdtemp(join(tmpdir(), 'peerverse-ledger-prof-')) : undefined
  const vals: Validator[] = []
  const cleanup = async (): Promise<void> => {
    for (const v of vals) { v.ws?.terminate(); v.agent.destroy() }
    await Promise.all(vals.map(async v => {
      if (v.proc.exitCode != null || v.proc.signalCode != null) return
      const exited = once(v.proc, 'exit')
      v.proc.kill('SIGTERM')
      const t = setTimeout(() => { v.proc.kill('SIGKILL') }, 15_000)
      await exited
      clearTimeout(t)
    }))
    await rm(work, { recursive: true, force: true })
  }
  process.once('SIGINT', () => { void cleanup().finally(() => process.exit(130)) })

  try {
    // -- genesis: four validators, the faucet, and SENDERS_PER_STEP funded senders per step
    const chain = `peerverse-bench-${SEED}`
    const validatorDids: string[] = []
    for (let i = 0; i < VALIDATORS; i++) validatorDids.push((await initIdentity(join(work, `v${i}`))).did)
    const senders: Ed25519Key[][] = RATES.map((_, s) => Array.from({ length: SENDERS_PER_STEP }, (_, i) => seededKey(`step${s}/sender${i}`)))
    const genesis: Genesis = {
      chain,
      time: Date.now(),
      accounts: [
        { id: faucetDid(chain), balance: FAUCET_SUPPLY },
        ...validatorDids.map(id => ({ id, balance: FAUCET_GRANT, stake: DEVNET_STAKE })),
        ...senders.flat().map(k => ({ id: didFromPublicKey(k.publicKey), balance: SENDER_BALANCE, stake: 0n }))
      ]
    }
    const genesisPath = join(work, 'genesis.json')
    await writeFile(genesisPath, genesisJson(genesis))

    // -- pre-sign every step's transfers (round-robin over the step's senders, consecutive nonces)
    const signStart = performance.now()
    const steps: Step[] = []
    const byB64 = new Map<string, Sent>()
    const sample: Uint8Array[] = []
    for (let s = 0; s < RATES.length; s++) {
      const n = Math.round(RATES[s] * STEP_SECONDS)
      const nonces = new Array<number>(SENDERS_PER_STEP).fill(0)
      const dids = senders[s].map(k => didFromPublicKey(k.publicKey))
      const txs: Sent[] = []
      for (let i = 0; i < n; i++) {
        const from = i % SENDERS_PER_STEP
        let to = rand.int(SENDERS_PER_STEP - 1)
        if (to >= from) to++
        const tx = await signTx(senders[s][from], { chain, nonce: nonces[from]++, fee: 1n, kind: 'transfer', to: dids[to], amount: BigInt(1 + rand.int(1000)) })
        const sent: Sent = { b64: Buffer.from(tx.bytes).toString('base64'), step: s, to: from % VALIDATORS, from, submitted: 0, accepted: false, full: 0 }
        txs.push(sent)
        byB64.set(sent.b64, sent)
        if (sample.length < 2_000) sample.push(tx.bytes)
      }
      steps.push({ rate: RATES[s], txs, start: 0, end: 0 })
    }
    const total = steps.reduce((n, s) => n + s.txs.length, 0)
    progress(`signed ${total} transfers in ${fmt((performance.now() - signStart) / 1000, 1)} s`)

    // -- part 1: Ed25519 verification rate, on this process's one thread, machine otherwise idle
    const parts = sample.map(bytes => {
      const r = dagCbor.decode(bytes) as { v: number, type: string, author: string, payload: unknown, sig: Uint8Array }
      const body = dagCbor.encode({ v: r.v, type: r.type, author: r.author, payload: r.payload })
      const msg = new Uint8Array(Buffer.concat([Buffer.from('peerverse/record/v1\n'), body]))
      return { publicKey: publicKeyFromDid(r.author), msg, sig: r.sig }
    })
    for (const p of parts) if (!ed25519Verify(p.publicKey, p.msg, p.sig)) throw new Error('signing bytes rebuilt wrongly')
    let verifies = 0
    let t0 = performance.now()
    while (performance.now() - t0 < VERIFY_MS) {
      for (let i = 0; i < 100; i++) { const p = parts[verifies % parts.length]; ed25519Verify(p.publicKey, p.msg, p.sig); verifies++ }
    }
    const verifyRate = verifies / ((performance.now() - t0) / 1000)
    let decodes = 0
    t0 = performance.now()
    while (performance.now() - t0 < VERIFY_MS) {
      for (let i = 0; i < 100; i++) { decodeTx(sample[decodes % sample.length], chain); decodes++ }
    }
    const decodeRate = decodes / ((performance.now() - t0) / 1000)
    progress(`ed25519Verify ${fmt(verifyRate)}/s, decodeTx ${fmt(decodeRate)}/s on one core`)

    // -- start the validators
    const startAt = performance.now()
    vals.push(await startValidator(0, join(work, 'v0'), genesisPath, [], undefined))
    for (let i = 1; i < VALIDATORS; i++) vals.push(await startValidator(i, join(work, `v${i}`), genesisPath, [vals[0].addr], i === 1 ? profileDir : undefined))
    if (profileDir != null) progress(`validator 1 runs under --cpu-prof; profile goes to ${profileDir}`)

    // Block contents: fetched once per height from the first validator to announce it.
    const fetched = new Set<number>()
    const blockQueue: Array<{ v: Validator, height: number, tries?: number }> = []
    let fetching = false
    const blockTxs = new Map<number, number>()
    const pump = async (): Promise<void> => {
      if (fetching) return
      fetching = true
      try {
        while (blockQueue.length > 0) {
          const { v, height, tries = 0 } = blockQueue.shift()!
          try {
            const res = await api<{ txs: string[] }>(v, 'GET', `/api/v0/ledger/block/${height}`)
            if (res.status !== 200) throw new Error(`status ${res.status}`)
            blockTxs.set(height, res.body.txs.length)
            for (const b64 of res.body.txs) {
              const sent = byB64.get(b64)
              if (sent != null && sent.height == null) {
                sent.height = height
                if (sent.accepted) outstanding.set(senderKey(sent), (outstanding.get(senderKey(sent)) ?? 1) - 1)
              }
            }
          } catch (err) {
            progress(`block ${height} from validator ${v.index}: ${(err as Error).message}`)
            // A keep-alive socket the server closed: ask again (a few times).
            if (tries < 3) blockQueue.push({ v, height, tries: tries + 1 })
            else fetched.delete(height)
          }
        }
      } finally {
        fetching = false
      }
    }
    const onBlock = (v: Validator, height: number, txs: number): void => {
      if (fetched.has(height)) return
      fetched.add(height)
      if (txs === 0) { blockTxs.set(height, 0); return }
      blockQueue.push({ v, height })
      void pump()
    }
    for (const v of vals) await listen(v, onBlock)
    const live = async (): Promise<boolean> => {
      const heights = await Promise.all(vals.map(async v => (await api<{ height: number }>(v, 'GET', '/api/v0/ledger/status')).body.height))
      return heights.every(h => h >= 2)
    }
    while (!await live().catch(() => false)) {
      if (performance.now() - startAt > START_DEADLINE_MS) throw new Error(`validators did not reach height 2 within ${START_DEADLINE_MS / 1000} s`)
      await sleep(250)
    }
    progress(`4 validators committing after ${fmt((performance.now() - startAt) / 1000, 1)} s`)

    // -- part 2: the sweep
    const stepCpu: number[][] = []
    /** Validators' CPU seconds (all four together) during each step. */
    const stepValidatorCpu: number[] = []
    let stalled = -1
    for (let s = 0; s < steps.length; s++) {
      const step = steps[s]
      progress(`offering ${step.rate} tx/s for ${STEP_SECONDS} s (${step.txs.length} transfers)`)
      const cpuBefore = await Promise.all(vals.map(async v => procCpuSeconds(v.proc.pid)))
      const selfBefore = process.cpuUsage()
      let next = 0
      const inflight = new Set<Promise<void>>()
      step.start = performance.now()
      /**
       * Held by their clients: refused as full, or behind a refused one of the same sender (a
       * wallet keeps its nonces in order), in order. The error says to try again after the next
       * block: a held transaction is offered again once its validator announces a block after
       * the refusal, with the sender's later ones behind it.
       */
      let held: Sent[] = []
      const heldSenders = new Set<number>()
      /** Senders with a request in flight: their next transactions wait for its answer (a client learns a refusal before it sends the nonce after). */
      const busy = new Map<number, number>()
      const offer = (list: Sent[]): void => {
        for (const sent of list) busy.set(sent.from, (busy.get(sent.from) ?? 0) + 1)
        const batches: Sent[][] = vals.map(() => [])
        for (const sent of list) batches[sent.to].push(sent)
        for (let i = 0; i < vals.length; i++) {
          const group = batches[i]
          for (let from = 0; from < group.length; from += SUBMIT_BATCH) {
            const part = group.slice(from, from + SUBMIT_BATCH)
            const p = submit(vals[i], part).finally(() => {
              inflight.delete(p)
              for (const sent of part) {
                if (sent.retry === true) { held.push(sent); heldSenders.add(sent.from) }
                const n = (busy.get(sent.from) ?? 1) - 1
                if (n > 0) busy.set(sent.from, n)
                else busy.delete(sent.from)
              }
            })
            inflight.add(p)
          }
        }
      }
      /** The held transactions whose turn came (their validator announced a block since the refusal), and the new ones, each sender's in nonce order; a sender with a request in flight waits for its answer. */
      const release = (fresh: Sent[]): Sent[] => {
        const out: Sent[] = []
        const still: Sent[] = []
        const blocked = new Set<number>(busy.keys())
        // A client with MAX_OUTSTANDING_PER_SENDER accepted and not yet in a block waits for a block.
        const room = new Map<number, number>()
        const full = (sent: Sent): boolean => {
          const left = room.get(sent.from) ?? MAX_OUTSTANDING_PER_SENDER - (outstanding.get(senderKey(sent)) ?? 0)
          room.set(sent.from, left - 1)
          return left <= 0
        }
        for (const sent of held.sort((a, b) => a.submitted - b.submitted)) {
          const waiting = blocked.has(sent.from) || (sent.retry === true && head(vals[sent.to]) <= (sent.refusedAt ?? 0)) || full(sent)
          if (waiting) { blocked.add(sent.from); still.push(sent) } else out.push(sent)
          // A refused one goes again alone: its sender's others follow once it is taken (no storm of tries).
          if (!waiting && sent.retry === true) blocked.add(sent.from)
        }
        for (const sent of fresh) {
          if (blocked.has(sent.from) || full(sent)) { blocked.add(sent.from); still.push(sent) } else out.push(sent)
        }
        held = still
        heldSenders.clear()
        for (const sent of still) heldSenders.add(sent.from)
        return out
      }
      let gapsTraced = 0
      if (process.env.BENCH_TRACE === '1') {
        onNonceGap = sent => {
          if (gapsTraced++ >= 3) return
          // The sender's oldest accepted transaction no block holds yet: where is it?
          const stuck = step.txs.find(t => t.from === sent.from && t.accepted && t.height == null)
          if (stuck == null) return
          const id = recordId(new Uint8Array(Buffer.from(stuck.b64, 'base64')))
          void Promise.all(vals.map(async v => (await api<{ status?: string }>(v, 'GET', `/api/v0/ledger/tx/${id}`).catch(() => undefined))?.body?.status ?? '?')).then(st => {
            progress(`trace gap: sender ${sent.from} (gateway v${sent.to}); its oldest accepted, accepted ${fmt(performance.now() - (stuck.acceptedAt ?? 0))} ms ago, is at v0..v3: ${st.join(' ')}`)
          })
        }
      }
      // BENCH_TRACE=1: validator 0's mempool and back-pressure readings every 250 ms, on stderr.
      const trace = process.env.BENCH_TRACE === '1'
        ? setInterval(() => {
          void api<{ height: number, mempool: number, backlog: { txs: number, unchecked: number, uncheckedWaitMs: number, waitMs: number }, gossipRefused: Record<string, number> }>(vals[0], 'GET', '/api/v0/ledger/status').then(r => {
            const b = r.body
            progress(`trace t=${fmt(performance.now() - step.start)} h=${b.height} mempool=${b.mempool} ready=${b.backlog?.txs} unchecked=${b.backlog?.unchecked}/${b.backlog?.uncheckedWaitMs}ms wait=${b.backlog?.waitMs} held=${held.length} peers' refused ${JSON.stringify(b.gossipRefused)}`)
          }, () => {})
        }, 250)
        : undefined
      while (next < step.txs.length) {
        const due = Math.min(step.txs.length, Math.floor((performance.now() - step.start) / 1000 * step.rate))
        const fresh: Sent[] = []
        for (; next < due; next++) {
          const sent = step.txs[next]
          sent.submitted = step.start + next * 1000 / step.rate
          fresh.push(sent)
        }
        offer(release(fresh))
        await sleep(TICK_MS)
      }
      step.end = performance.now()
      clearInterval(trace)
      const drainEnd = performance.now() + DRAIN_DEADLINE_MS
      while ((inflight.size > 0 || held.length > 0 || step.txs.some(t => t.accepted && t.height == null)) && performance.now() < drainEnd) {
        const list = release([])
        offer(list)
        await sleep(held.length > 0 || list.length > 0 ? TICK_MS : 200)
      }
      await Promise.all(inflight)
      for (const t of step.txs) if (t.retry === true) t.error = 'MempoolFullError'
      if (process.env.BENCH_TRACE === '1') {
        // Each sender's first accepted transaction that no block holds: what its gateway says of it.
        const first = new Map<number, Sent>()
        for (const t of step.txs) if (t.accepted && t.height == null && !first.has(t.from)) first.set(t.from, t)
        const says = new Map<string, number>()
        for (const t of [...first.values()].slice(0, 40)) {
          const id = recordId(new Uint8Array(Buffer.from(t.b64, 'base64')))
          const r = await api<{ status?: string, error?: string, reason?: { name?: string } }>(vals[t.to], 'GET', `/api/v0/ledger/tx/${id}`).catch(() => undefined)
          const k = `${r?.body?.status ?? r?.status}/${r?.body?.reason?.name ?? r?.body?.error ?? ''}`
          says.set(k, (says.get(k) ?? 0) + 1)
        }
        progress(`trace: ${first.size} senders with an accepted transaction no block holds; their gateways say ${JSON.stringify(Object.fromEntries(says))}`)
      }
      await sleep(500)
      const cpuAfter = await Promise.all(vals.map(async v => procCpuSeconds(v.proc.pid)))
      const self = process.cpuUsage(selfBefore)
      const wall = (performance.now() - step.start) / 1000
      stepCpu.push([...cpuAfter.map((c, i) => (c - cpuBefore[i]) / wall), (self.user + self.system) / 1e6 / wall])
      stepValidatorCpu.push(cpuAfter.reduce((n, c, i) => n + c - cpuBefore[i], 0))
      const done = step.txs.filter(t => t.height != null).length
      progress(`  ${done}/${step.txs.length} committed; ${step.txs.filter(t => t.error != null).length} refused`)
      const last = Math.max(...vals.flatMap(v => [...v.commits.values()]))
      if (step.txs.some(t => t.accepted && t.height == null) && performance.now() - last > 10_000) {
        stalled = s
        progress(`  no block for ${fmt((performance.now() - last) / 1000, 1)} s with transactions waiting: the chain has stalled; the sweep stops here`)
        break
      }
    }

    // -- figures
    const commitTime = (sent: Sent): number | undefined => {
      if (sent.height == null) return undefined
      return vals[sent.to].commits.get(sent.height) ?? Math.min(...vals.map(v => v.commits.get(sent.height!) ?? Infinity))
    }
    const out = (line = ''): void => { process.stdout.write(line + '\n') }
    out(`Ledger benchmark: ${VALIDATORS} validators (separate processes) + this load process on ${cores} cores, loopback. Seed ${SEED}.`)
    const txBytes = sample.reduce((n, b) => n + b.length, 0) / sample.length
    out(`Load average (1 min) at start ${fmt(loadStart, 2)}, at end ${fmt(loadavg()[0], 2)} on ${cores} cores: anything above ~0 is other work sharing the cores.`)
    out(`Genesis: ${genesis.accounts.length} accounts (${SENDERS_PER_STEP} fresh senders per step). Block limits: ${MAX_TXS_PER_BLOCK} txs, commit pause ${COMMIT_PAUSE_MS} ms; mempool allows ${MAX_TXS_PER_SENDER} waiting txs per sender. A transfer is ${fmt(txBytes)} bytes.`)
    out()
    out('1. Ed25519 on this machine (one core, node:crypto, the transfers below)')
    out(`   ed25519Verify          ${pad(fmt(verifyRate), 8)} /s   (${fmt(1e6 / verifyRate, 1)} us each)`)
    out(`   decodeTx (full check)  ${pad(fmt(decodeRate), 8)} /s   (${fmt(1e6 / decodeRate, 1)} us each: DAG-CBOR decode + canonical re-encode + verify + CID)`)
    const ceiling = cores * verifyRate / VALIDATORS
    out(`   verification ceiling   ${pad(fmt(ceiling), 8)} tx/s = ${cores} cores x ${fmt(verifyRate)} verifies/s / ${VALIDATORS} validators (each verifies every tx at least once)`)
    out()
    out(`2. Open-loop sweep, ${STEP_SECONDS} s per step, each sender through one of the 4 APIs (${SUBMIT_MODE === 'batch' ? `one submit-batch per validator per ${TICK_MS} ms tick` : 'one submit per transaction'}); committed/s = txs in the step's blocks after its first / time from its first block to its last;`)
    out('   latency = block announced by the validator the tx was sent to - time the tx was due in the schedule (a tx refused as MempoolFullError is offered again after the next block, its sender\'s later ones held behind it: its wait counts);')
    out('   p99 acc = the same from the answer that accepted it; full = MempoolFullError answers; rounds = rounds per height over the step\'s heights (1.00: no round failed)')
    out('   offered  submitted/s  accepted   full  refused  committed  committed/s   p50 ms   p99 ms   max ms  p99 acc  rounds  blocks  txs/block  interval ms   CPU v0..v3, load (cores)')
    let best: { rate: number, committed: number, p50: number, p99: number } | undefined
    for (const step of steps.slice(0, stepCpu.length)) {
      const n = step.txs.length
      const submitRate = n / ((step.end - step.start) / 1000)
      const accepted = step.txs.filter(t => t.accepted).length
      const refused = step.txs.filter(t => t.error != null)
      const committed = step.txs.filter(t => t.height != null)
      // Service rate between the first and the last block holding this step's transactions (as
      // seen by validator 0): every transaction in the blocks after the first, over that span.
      const hs = [...new Set(committed.map(t => t.height!))].sort((a, b) => a - b)
      const span = hs.length > 1 ? ((vals[0].commits.get(hs[hs.length - 1]) ?? NaN) - (vals[0].commits.get(hs[0]) ?? NaN)) / 1000 : NaN
      const committedRate = hs.slice(1).reduce((n, h) => n + (blockTxs.get(h) ?? 0), 0) / span
      const lat = committed.map(t => commitTime(t)! - t.submitted)
      const latAcc = committed.map(t => commitTime(t)! - (t.acceptedAt ?? t.submitted))
      const full = step.txs.reduce((n, t) => n + t.full, 0)
      const heights = new Set(hs)
      const rounds: number[] = []
      for (let h = hs[0] ?? 1; h <= (hs[hs.length - 1] ?? 0); h++) {
        const r = vals.map(v => v.records.get(h)?.rounds).filter((x): x is number => x != null)
        if (r.length > 0) rounds.push(Math.max(...r))
      }
      const meanRounds = rounds.length > 0 ? rounds.reduce((a, b) => a + b, 0) / rounds.length : NaN
      const cpu = stepCpu[steps.indexOf(step)]
      const gaps = hs.slice(1).map((h, i) => (vals[0].commits.get(h) ?? NaN) - (vals[0].commits.get(hs[i]) ?? NaN)).filter(Number.isFinite)
      const interval = gaps.length > 0 ? gaps.reduce((a, b) => a + b, 0) / gaps.length : NaN
      out(`   ${pad(fmt(step.rate), 7)}  ${pad(fmt(submitRate), 11)}  ${pad(fmt(accepted), 8)}  ${pad(fmt(full), 5)}  ${pad(fmt(refused.length), 7)}  ${pad(fmt(committed.length), 9)}  ${pad(fmt(committedRate), 11)}  ${pad(fmt(percentile(lat, 50)), 7)}  ${pad(fmt(percentile(lat, 99)), 7)}  ${pad(fmt(Math.max(...lat)), 7)}  ${pad(fmt(percentile(latAcc, 99)), 7)}  ${pad(fmt(meanRounds, 2), 6)}  ${pad(fmt(heights.size), 6)}  ${pad(fmt(committed.length / heights.size), 9)}  ${pad(fmt(interval), 11)}   ${cpu.slice(0, VALIDATORS).map(c => fmt(c, 2)).join(' ')}, ${fmt(cpu[VALIDATORS], 2)}`)
      if (refused.length > 0) {
        const reasons = new Map<string, number>()
        for (const t of refused) reasons.set(t.error!, (reasons.get(t.error!) ?? 0) + 1)
        out(`            refused: ${[...reasons].map(([k, v]) => `${k} x${v}`).join(', ')}`)
      }
      // The best step is the one that commits most within the latency target; with none within
      // it, the one that commits most.
      const row = { rate: step.rate, committed: committedRate, p50: percentile(lat, 50), p99: percentile(lat, 99) }
      runRows.push({ rate: step.rate, committed: committedRate, p50: row.p50, p99: row.p99, max: Math.max(...lat), p99Accepted: percentile(latAcc, 99), rounds: meanRounds, full, all: committed.length === accepted && accepted > 0 })
      const within = (r: typeof row): boolean => r.p50 < TARGET_P50_MS
      if (Number.isFinite(committedRate) && (best == null || (within(row) && !within(best)) || (within(row) === within(best) && committedRate > best.committed))) best = row
    }
    out()
    out('   Per-height records (every validator\'s ledger:block record; a height counts its most rounds and every timeout any validator saw):')
    out('   offered  heights  rounds/height  timed out  propose  prevote  precommit   proposal ms p50/max   to-commit ms p50/max   build ms max  check ms max  mempool max')
    const worst: string[] = []
    for (const step of steps.slice(0, stepCpu.length)) {
      const hs = [...new Set(step.txs.filter(t => t.height != null).map(t => t.height!))]
      if (hs.length === 0) continue
      const lo = Math.min(...hs)
      const hi = Math.max(...hs)
      const rows: Array<{ h: number, recs: HeightRecord[] }> = []
      for (let h = lo; h <= hi; h++) rows.push({ h, recs: vals.map(v => v.records.get(h)).filter((r): r is HeightRecord => r != null) })
      const per = rows.filter(r => r.recs.length > 0).map(({ h, recs }) => ({
        h,
        rounds: Math.max(...recs.map(r => r.rounds)),
        propose: recs.reduce((n, r) => n + r.timeouts.propose, 0),
        prevote: recs.reduce((n, r) => n + r.timeouts.prevote, 0),
        precommit: recs.reduce((n, r) => n + r.timeouts.precommit, 0),
        proposalAt: Math.max(...recs.map(r => r.proposalAtMs)),
        toCommit: Math.max(...recs.map(r => r.proposalToCommitMs)),
        heightMs: Math.max(...recs.map(r => r.heightMs)),
        build: Math.max(...recs.map(r => r.buildMs)),
        check: Math.max(...recs.map(r => r.checkMs)),
        mempool: Math.max(...recs.map(r => r.mempool)),
        txs: recs[0].txs,
        bytes: Math.max(...recs.map(r => r.proposalBytes)),
        proposals: recs.map(r => r.proposals.join(' ')).join(' | '),
        slow: recs.map(r => r.slowest == null ? '' : `${r.slowest.step}/${r.slowest.wait}/${r.slowest.write}`).join(' | ')
      }))
      if (per.length === 0) continue
      const timedOut = per.filter(r => r.propose + r.prevote + r.precommit > 0).length
      const sum = (k: 'propose' | 'prevote' | 'precommit'): number => per.reduce((n, r) => n + (r[k] > 0 ? 1 : 0), 0)
      out(`   ${pad(fmt(step.rate), 7)}  ${pad(fmt(per.length), 7)}  ${pad(fmt(per.reduce((n, r) => n + r.rounds, 0) / per.length, 2), 13)}  ${pad(fmt(100 * timedOut / per.length, 0) + ' %', 9)}  ${pad(fmt(sum('propose')), 7)}  ${pad(fmt(sum('prevote')), 7)}  ${pad(fmt(sum('precommit')), 9)}   ${pad(`${fmt(percentile(per.map(r => r.proposalAt), 50))}/${fmt(Math.max(...per.map(r => r.proposalAt)))}`, 20)}   ${pad(`${fmt(percentile(per.map(r => r.toCommit), 50))}/${fmt(Math.max(...per.map(r => r.toCommit)))}`, 20)}   ${pad(fmt(Math.max(...per.map(r => r.build))), 11)}  ${pad(fmt(Math.max(...per.map(r => r.check))), 12)}  ${pad(fmt(Math.max(...per.map(r => r.mempool))), 11)}`)
      for (const r of [...per].sort((a, b) => b.heightMs - a.heightMs).slice(0, 3)) {
        worst.push(`   ${pad(fmt(step.rate), 7)}  h${r.h}: ${fmt(r.heightMs)} ms, rounds ${r.rounds}, timeouts propose/prevote/precommit ${r.propose}/${r.prevote}/${r.precommit}, ${fmt(r.txs)} txs ${fmt(r.bytes)} B, proposal at ${fmt(r.proposalAt)} ms, to commit ${fmt(r.toCommit)} ms, build ${fmt(r.build)} check ${fmt(r.check)} ms, mempool ${fmt(r.mempool)}; proposals seen (round:txs) ${r.proposals}; slowest step/queue wait/write ms ${r.slow}`)
      }
    }
    if (worst.length > 0) {
      out('   Slowest heights of each step (the timeout counts add every validator\'s):')
      for (const w of worst) out(w)
    }
    // Work per transaction does not depend on what else shares the cores (the rates above do).
    out(`   validator CPU per committed tx (4 validators together): ${steps.slice(0, stepCpu.length).map((step, i) => `${fmt(step.rate)}: ${fmt(stepValidatorCpu[i] * 1000 / Math.max(1, step.txs.filter(t => t.height != null).length), 2)} ms`).join(', ')}`)
    if (stalled >= 0) {
      out(`   STALLED at ${fmt(steps[stalled].rate)} tx/s offered: no block for 10+ s with accepted transactions waiting; ${steps.length - stalled - 1} step(s) not run.`)
      const errors = new Set<string>()
      for (const v of vals) for (const line of v.stderr.split('\n')) if (line.includes(':error')) errors.add(`v${v.index}: ${line.replace(/^\S+ /, '').replace(/\d+ bytes/, 'N bytes')}`)
      for (const e of errors) out(`   validator log: ${e}`)
    }
    out()
    if (best != null) {
      const share = best.committed * VALIDATORS / (cores * verifyRate)
      out(`3. Best step (most committed with p50 < ${fmt(TARGET_P50_MS)} ms): ${fmt(best.committed)} committed tx/s at ${fmt(best.rate)} offered, p50 ${fmt(best.p50)} ms, p99 ${fmt(best.p99)} ms`)
      out(`   share of the verification ceiling = committed tx/s x ${VALIDATORS} validators / (${cores} cores x ${fmt(verifyRate)} verifies/s) = ${fmt(share * 100, 1)} %`)
      out(`   target: >= ${fmt(TARGET_TX_PER_S)} committed tx/s with p50 < ${fmt(TARGET_P50_MS)} ms -> ${best.committed >= TARGET_TX_PER_S && best.p50 < TARGET_P50_MS ? 'met' : 'not met'}; CometBFT QA (200 nodes) saturates near 400 tx/s`)
    }
  } finally {
    progress('stopping validators')
    await cleanup()
    if (profileDir != null) progress(`profile kept in ${profileDir}`)
  }
}

/** Sweeps run, each on a fresh chain (BENCH_LEDGER_RUNS, default 3). */
const RUNS = Number(process.env.BENCH_LEDGER_RUNS ?? 3)
const P99_TARGET_MS = 1000
const runs: Row[][] = []
const benchStart = performance.now()
for (let r = 0; r < RUNS; r++) {
  progress(`run ${r + 1} of ${RUNS}`)
  process.stdout.write(`\n==== run ${r + 1} of ${RUNS}\n`)
  const rows: Row[] = []
  runs.push(rows)
  await main(rows)
}
{
  const out = (line = ''): void => { process.stdout.write(line + '\n') }
  out()
  out(`==== Summary over ${RUNS} run(s) (${fmt((performance.now() - benchStart) / 60_000, 1)} min; load average now ${fmt(loadavg()[0], 2)} on ${cpus().length} cores)`)
  out('   offered   committed/s (min..max)   p50 ms (max)   p99 ms (max)   max ms (max)   p99 acc (max)   rounds/height (max)   full answers (max)')
  for (const rate of RATES) {
    const rows = runs.map(rs => rs.find(r => r.rate === rate))
    const got = rows.filter((r): r is Row => r != null)
    if (got.length === 0) continue
    const worst = (k: keyof Row): number => Math.max(...got.map(r => Number(r[k])))
    out(`   ${pad(fmt(rate), 7)}   ${pad(`${fmt(Math.min(...got.map(r => r.committed)))}..${fmt(worst('committed'))}`, 22)}   ${pad(fmt(worst('p50')), 12)}   ${pad(fmt(worst('p99')), 12)}   ${pad(fmt(worst('max')), 12)}   ${pad(fmt(worst('p99Accepted')), 13)}   ${pad(fmt(worst('rounds'), 2), 19)}   ${pad(fmt(worst('full')), 18)}${got.length < RUNS ? `   (ran in ${got.length} of ${RUNS})` : ''}`)
  }
  // Honest: a rate counts only if every run reached it, committed all it accepted, and kept p99 under the target.
  const ok = (rate: number, key: 'p99' | 'p99Accepted'): boolean => runs.every(rs => { const r = rs.find(x => x.rate === rate); return r != null && r.all && r[key] < P99_TARGET_MS })
  const highest = (key: 'p99' | 'p99Accepted'): number | undefined => [...RATES].sort((a, b) => b - a).find(rate => ok(rate, key))
  const a = highest('p99')
  const b = highest('p99Accepted')
  out(`   highest offered rate with p99 < ${fmt(P99_TARGET_MS)} ms from when each tx was due, in all ${RUNS} run(s): ${a == null ? 'none' : `${fmt(a)} tx/s`}`)
  out(`   highest offered rate with p99 < ${fmt(P99_TARGET_MS)} ms from acceptance (refusals past the backlog allowed), in all ${RUNS} run(s): ${b == null ? 'none' : `${fmt(b)} tx/s`}`)
}

