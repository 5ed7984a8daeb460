/**
 * The ledger on a disk that fills up, and across crashes, with real `peerverse start` processes:
 * the single-validator devnet on a small tmpfs halts while the disk is full (status says why, a
 * payment is refused with LedgerHaltedError), resumes by itself once space is freed, and after a
 * restart comes back at its height with its balances and keeps committing. A payment answered
 * "pending" survives kill -9 and commits after the restart.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { closeSync, openSync, writeSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ApiError } from '../../src/api/errors.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'

const run = promisify(execFile)
/** Someone to pay: an account no one else touches. */
const PAYEE = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'
const set = new PeerSet()

interface Status { chain: string, height: number, halted: { error: string, code?: string, message: string } | null, pendingOwn: number }
interface TxStatus { status: string, height?: number, error?: string }

async function status (p: CliPeer): Promise<Status> {
  return await p.api.request<Status>('GET', '/api/v0/ledger/status')
}

async function balance (p: CliPeer, did: string): Promise<bigint> {
  return BigInt((await p.api.request<{ balance: string }>('GET', `/api/v0/ledger/balance/${encodeURIComponent(did)}`)).balance)
}

async function txStatus (p: CliPeer, id: string): Promise<TxStatus> {
  return await p.api.request<TxStatus>('GET', `/api/v0/ledger/tx/${id}`)
}

/** Writes `path` until the filesystem is full (ENOSPC); returns the bytes written. */
function fill (path: string): number {
  const fd = openSync(path, 'w')
  let written = 0
  try {
    for (const size of [1 << 20, 1 << 12, 1]) {
      const chunk = Buffer.alloc(size, 0x5a)
      try {
        while (true) written += writeSync(fd, chunk)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
      }
    }
  } finally {
    closeSync(fd)
  }
  return written
}

describe('the ledger on a full disk and across crashes', { timeout: 300_000 }, () => {
  after(async () => { await set.cleanup() })

  it('halts while the disk is full, says so, refuses payments, resumes by itself once space is freed, and restarts at its height', async t => {
    const mnt = await mkdtemp(join(tmpdir(), 'peerverse-ledger-disk-'))
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', mnt])
    } catch (err) {
      await rm(mnt, { recursive: true, force: true })
      t.skip(`cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]})`)
      return
    }
    t.after(async () => {
      for (const p of set.peers.filter(p => p.dataDir.startsWith(mnt))) await set.kill(p)
      await run('umount', [mnt]).catch(async () => await run('umount', ['-l', mnt]).catch(() => {}))
      await rm(mnt, { recursive: true, force: true })
    })
    const dataDir = join(mnt, 'peer')
    let a = await set.start({ dataDir })
    const payee = PAYEE
    await waitFor('the devnet commits', async () => (await status(a)).height >= 2, 60_000)
    const first = await runCli(['pay', payee, '1000', '--data', dataDir, '--json'])
    assert.equal(first.code, 0, first.stderr)
    assert.equal((JSON.parse(first.stdout) as TxStatus).status, 'committed')

    // The disk fills up: the next write fails and the ledger halts, and says so.
    const filler = join(mnt, 'filler')
    assert.ok(fill(filler) > 0)
    const halted = await waitFor('the ledger halts', async () => { const s = await status(a); return s.halted != null ? s : undefined }, 60_000)
    assert.equal(halted.halted!.code, 'ENOSPC')
    const shown = await runCli(['status', '--data', dataDir])
    assert.equal(shown.code, 0, shown.stderr)
    assert.match(shown.stdout, /ledger: .*HALTED: cannot write to the store \(ENOSPC\)/)
    const chain = await runCli(['chain', '--data', dataDir])
    assert.match(chain.stdout, /state: +HALTED/)
    // A payment now is refused, with a named error, and nothing commits.
    await assert.rejects(a.api.request('POST', '/api/v0/ledger/pay', { to: payee, amount: '5' }), (err: ApiError) => {
      assert.equal(err.status, 503)
      assert.equal(err.code, 'LedgerHaltedError')
      return true
    })
    const refused = await runCli(['pay', payee, '5', '--data', dataDir])
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /LedgerHaltedError|cannot write/)
    const still = await status(a)
    assert.ok(still.halted != null)
    assert.equal(still.height, halted.height)

    // Space is freed: the ledger resumes by itself, no restart, and commits again.
    await rm(filler)
    const resumed = await waitFor('the ledger resumes', async () => { const s = await status(a); return s.halted == null && s.height > halted.height + 1 ? s : undefined }, 60_000)
    assert.equal(resumed.halted, null)
    const second = await runCli(['pay', payee, '2000', '--data', dataDir, '--json'])
    assert.equal(second.code, 0, second.stderr)
    assert.equal((JSON.parse(second.stdout) as TxStatus).status, 'committed')
    assert.equal(await balance(a, payee), 3000n)
    const before = (await status(a)).height

    // Restarted, it comes back at its height with its balances, and keeps committing.
    assert.equal(await set.stop(a), 0)
    a = await set.start({ dataDir })
    const back = await status(a)
    assert.ok(back.height >= before, `restarted at ${back.height}, was at ${before}`)
    assert.equal(back.halted, null)
    assert.equal(await balance(a, payee), 3000n)
    await waitFor('commits after the restart', async () => (await status(a)).height > back.height + 1, 60_000)
    const third = await runCli(['pay', payee, '4', '--data', dataDir, '--json'])
    assert.equal((JSON.parse(third.stdout) as TxStatus).status, 'committed', third.stderr)
    assert.equal(await balance(a, payee), 3004n)
    assert.doesNotMatch(a.stderr(), /do not hold/)
  })

  it('a payment answered "pending" survives kill -9 and commits after the restart', async () => {
    const validator = await set.start()
    const genesis = join(validator.dataDir, 'genesis.json')
    const dataDir = await set.tempDir()
    // Funded while connected to the validator.
    let b = await set.start({ dataDir, bootstrap: [validator.addr], extra: ['--genesis', genesis] })
    const funded = await runCli(['faucet', '--data', dataDir, '--json'])
    assert.equal((JSON.parse(funded.stdout) as TxStatus).status, 'committed', funded.stderr)
    await waitFor('the follower holds the funds', async () => await balance(b, b.ready.did) > 0n, 60_000)
    assert.equal(await set.stop(b), 0)
    // Started alone, it can accept a payment but not commit it: pending, then kill -9.
    b = await set.start({ dataDir, extra: ['--genesis', genesis] })
    const payee = PAYEE
    const tx = await b.api.request<{ id: string, status: string }>('POST', '/api/v0/ledger/pay', { to: payee, amount: '777' })
    assert.equal(tx.status, 'pending')
    assert.equal((await txStatus(b, tx.id)).status, 'pending')
    await set.kill(b)
    // Back, and connected: it submits the payment again, which commits.
    b = await set.start({ dataDir, bootstrap: [validator.addr], extra: ['--genesis', genesis] })
    assert.equal((await txStatus(b, tx.id)).status, 'pending')
    const done = await waitFor('the payment commits', async () => { const s = await txStatus(b, tx.id); return s.status !== 'pending' ? s : undefined }, 90_000)
    assert.equal(done.status, 'committed', JSON.stringify(done))
    assert.equal((await txStatus(validator, tx.id)).status, 'committed')
    await waitFor('the payee is paid', async () => await balance(validator, payee) === 777n, 30_000)
    assert.equal((await status(b)).pendingOwn, 0)
  })
})
