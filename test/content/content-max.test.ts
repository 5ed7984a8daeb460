/**
 * A capped /content read (`?max=BYTES`, as the browser's Explore panel asks for a stranger's
 * thumbnail): a file over the cap is refused from its root (413 ContentTooLargeError) and the
 * reading peer's store does not take the file's data; a file within it is served whole; a `max`
 * that is not a byte count is a 400 InvalidMaxError. Two real peers on 127.0.0.1.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { CHUNK_SIZE } from '../../src/content/unixfs.ts'
import { MAX_CONTENT_MAX_DIGITS } from '../../src/api/routes/content.ts'
import { THUMBNAIL_MAX_BYTES, thumbnailUrl } from '../../web/src/panels/explore.ts'
import { PeerSet, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { seededBytes } from '../helpers/random.ts'

const MiB = 1024 * 1024
const set = new PeerSet()
after(async () => { await set.cleanup() })

async function add (p: CliPeer, bytes: Uint8Array, name: string): Promise<string> {
  const res = await p.api.raw('POST', `/api/v0/content/add?name=${name}`, { body: Buffer.from(bytes) })
  assert.equal(res.status, 200, await res.clone().text())
  return (await res.json() as { cid: string }).cid
}

async function store (p: CliPeer): Promise<{ usedBytes: number, blocks: number }> {
  return await p.api.request<{ usedBytes: number, blocks: number }>('GET', '/api/v0/content/store')
}

async function errorOf (res: Response): Promise<string> {
  return String((await res.json() as { error?: unknown }).error)
}

describe('/content/CID?max=BYTES', { timeout: 300_000 }, () => {
  let holder: CliPeer
  let viewer: CliPeer
  const big = seededBytes(2 * MiB + 7, 15)
  const small = seededBytes(100 * 1024, 16)
  let bigCid: string
  let smallCid: string

  before(async () => {
    holder = await set.start()
    viewer = await set.start({ bootstrap: [holder.addr] })
    bigCid = await add(holder, big, 'big.png')
    smallCid = await add(holder, small, 'small.png')
    await waitFor('the viewer is connected to the holder', async () => {
      const { peers } = await viewer.api.request<{ peers: Array<{ peerId: string }> }>('GET', '/api/v0/peers')
      return peers.some(p => p.peerId === holder.ready.peerId)
    })
  })

  it('the Explore panel asks for thumbnails with max=THUMBNAIL_MAX_BYTES', () => {
    const url = new URL(thumbnailUrl(bigCid, 't/k n'), 'http://127.0.0.1')
    assert.equal(url.pathname, `/content/${bigCid}`)
    assert.equal(url.searchParams.get('max'), String(THUMBNAIL_MAX_BYTES))
    assert.equal(url.searchParams.get('token'), 't/k n')
    assert.equal(THUMBNAIL_MAX_BYTES, 256 * 1024)
  })

  it('a file over max is refused with 413 ContentTooLargeError, and the viewer does not store it', async () => {
    const before = await store(viewer)
    // As the browser asks: the token in the query, no Authorization header.
    const url = `${viewer.api.url}${thumbnailUrl(bigCid, viewer.api.token)}`
    const got = await fetch(url)
    assert.equal(got.status, 413)
    assert.equal(await errorOf(got), 'ContentTooLargeError')
    const head = await viewer.api.raw('HEAD', `/content/${bigCid}?max=${THUMBNAIL_MAX_BYTES}`)
    assert.equal(head.status, 413)
    // A cap one byte short of the file is refused too.
    const near = await viewer.api.raw('GET', `/content/${bigCid}?max=${big.length - 1}`)
    assert.equal(near.status, 413)
    assert.equal(await errorOf(near), 'ContentTooLargeError')
    const afterRead = await store(viewer)
    // The root (a small dag-pb node) may be held now; none of the file's 1 MiB leaves is.
    assert.ok(afterRead.blocks - before.blocks <= 1, `blocks ${before.blocks} -> ${afterRead.blocks}`)
    assert.ok(afterRead.usedBytes - before.usedBytes < CHUNK_SIZE, `bytes ${before.usedBytes} -> ${afterRead.usedBytes}`)
    const stat = await viewer.api.request<{ size: number, blocks: number, localBlocks: number }>('GET', `/api/v0/content/stat/${bigCid}`)
    assert.equal(stat.size, big.length)
    assert.equal(stat.localBlocks, 0, 'no leaf of the refused file is held')
  })

  it('a file within max is served whole (max equal to its size included)', async () => {
    for (const max of [THUMBNAIL_MAX_BYTES, small.length]) {
      const res = await fetch(`${viewer.api.url}/content/${smallCid}?max=${max}&token=${encodeURIComponent(viewer.api.token)}`)
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-length'), String(small.length))
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), small)
    }
    const over = await viewer.api.raw('GET', `/content/${smallCid}?max=${small.length - 1}`)
    assert.equal(over.status, 413)
    await over.arrayBuffer()
    // With no max, the large file is still served whole, as before.
    const whole = await holder.api.raw('GET', `/content/${bigCid}`)
    assert.equal(whole.status, 200)
    assert.equal((await whole.arrayBuffer()).byteLength, big.length)
  })

  it('a max that is not a byte count is a 400 InvalidMaxError', async () => {
    const before = await store(viewer)
    for (const max of ['abc', '-1', '1e6', '1.5', '', ' 5', '0x10', '9'.repeat(MAX_CONTENT_MAX_DIGITS + 1)]) {
      for (const method of ['GET', 'HEAD']) {
        const res = await viewer.api.raw(method, `/content/${bigCid}?max=${encodeURIComponent(max)}`)
        assert.equal(res.status, 400, `${method} max=${JSON.stringify(max)}`)
        if (method === 'GET') assert.equal(await errorOf(res), 'InvalidMaxError')
      }
    }
    assert.equal((await store(viewer)).blocks, before.blocks, 'a refused max fetches nothing')
    // The largest accepted max reads the whole file; the viewer stays up.
    const res = await viewer.api.raw('HEAD', `/content/${smallCid}?max=${'9'.repeat(MAX_CONTENT_MAX_DIGITS)}`)
    assert.equal(res.status, 200)
  })
})
