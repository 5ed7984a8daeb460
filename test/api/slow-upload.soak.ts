/**
 * A slow honest upload to a real `peerverse` process: 12 MiB at 128 KiB/s takes 96 s, well past
 * the total limit a request once had (60 s, enforced within 30 s more), and succeeds because only
 * silence is limited (API_IDLE_TIMEOUT_MS, tested quickly in auth.test.ts). About 100 s, so it runs in `npm run test:soak`, not in the default run.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { API_IDLE_TIMEOUT_MS } from '../../src/api/server.ts'
import { PeerSet } from '../helpers/cli-peer.ts'
import { seeded } from '../helpers/random.ts'

const set = new PeerSet()
after(async () => { await set.cleanup() })

/** What the upload takes in all: longer than the old total limit on a request and its check (60 + 30 s). */
const UPLOAD_SECONDS = 96
const PIECE_BYTES = 32 * 1024
/** Pieces a second: 128 KiB/s. */
const PIECES_PER_SECOND = 4

describe('a slow honest upload (real process)', () => {
  it('12 MiB at 128 KiB/s, 96 s in all, is stored whole', { timeout: 300_000 }, async () => {
    assert.ok(1000 / PIECES_PER_SECOND < API_IDLE_TIMEOUT_MS, 'the pace stays inside the idle limit')
    const peer = await set.start()
    const rnd = seeded(2026)
    const pieces: Buffer[] = []
    const req = request(`${peer.api.url}/api/v0/content/add?name=slow.bin`, {
      method: 'POST',
      headers: { authorization: `Bearer ${peer.api.token}`, 'content-type': 'application/octet-stream' }
    })
    const answer = new Promise<{ status: number, body: string }>((resolve, reject) => {
      req.on('response', res => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', d => { body += d })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      })
      req.on('error', reject)
    })
    let early: { status: number, body: string } | undefined
    void answer.then(a => { early = a }, () => {})
    // The pace of an honest slow link: a piece every quarter second.
    for (let i = 0; i < UPLOAD_SECONDS * PIECES_PER_SECOND && early == null; i++) {
      const piece = Buffer.from(rnd.bytes(PIECE_BYTES))
      pieces.push(piece)
      req.write(piece)
      await new Promise(resolve => setTimeout(resolve, 1000 / PIECES_PER_SECOND))
    }
    assert.equal(early, undefined, `answered before the upload ended: ${JSON.stringify(early)}`)
    req.end()
    const { status, body } = await answer
    assert.equal(status, 200, body)
    const { cid, size } = JSON.parse(body) as { cid: string, size: number }
    assert.equal(size, UPLOAD_SECONDS * PIECES_PER_SECOND * PIECE_BYTES)
    const back = await peer.api.raw('GET', `/content/${cid}`)
    assert.ok(Buffer.from(await back.arrayBuffer()).equals(Buffer.concat(pieces)), 'the bytes come back whole')
  })
})
