/**
 * `peerverse space say` against a real peer process whose chat limit is spent: the API answers 429
 * (SpaceRateLimitError) and the CLI exits 1 printing what was not sent and why. The limit is kept
 * spent by a stream of API says while the CLI runs; a CLI say that lands just after a token came
 * back is sent, so the CLI is run again (a few times at most) until one meets the spent limit.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { ApiError } from '../../src/api/errors.ts'
import { CHAT_BURST, CHAT_SEND_MARGIN } from '../../src/space/index.ts'
import { PeerSet, runCli } from '../helpers/cli-peer.ts'

const set = new PeerSet()
after(async () => { await set.cleanup() })

describe('space say over the limit, from the CLI', { timeout: 180_000 }, () => {
  it('is refused with 429 and the CLI prints what was not sent', async () => {
    const peer = await set.start()
    const { id: space } = await peer.api.request<{ id: string }>('POST', '/api/v0/space/create', { name: 'Hall' })
    // Spend the limit, and keep it spent while the CLI runs.
    let statuses: number[] = []
    let hammering = true
    let refusedText = ''
    const hammer = (async () => {
      for (let i = 0; hammering; i++) {
        try {
          await peer.api.request('POST', '/api/v0/space/say', { space, text: `api ${i}` })
          statuses.push(200)
        } catch (err) {
          statuses.push(err instanceof ApiError ? err.status : -1)
        }
      }
    })()
    try {
      while (!statuses.includes(429)) await new Promise(resolve => setTimeout(resolve, 10))
      assert.ok(statuses.indexOf(429) >= CHAT_BURST - CHAT_SEND_MARGIN, `the first ${CHAT_BURST - CHAT_SEND_MARGIN} were sent`)
      assert.ok(statuses.every(s => s === 200 || s === 429), `only 200 and 429: ${JSON.stringify(statuses)}`)
      let r = { code: 0, stdout: '', stderr: '' }
      for (let attempt = 0; attempt < 5 && r.code === 0; attempt++) {
        refusedText = `one too many ${attempt}`
        r = await runCli(['space', 'say', space, ...refusedText.split(' '), '--data', peer.dataDir])
      }
      assert.equal(r.code, 1, `the CLI failed (${r.stdout} ${r.stderr})`)
      assert.match(r.stderr, /^peerverse: not sent: "one too many \d": receivers take \d+ messages at once, then \d+ a second \(try again in \d+ ms\)\n$/)
    } finally {
      hammering = false
      await hammer
    }
    statuses = []
    // Once a token is back (CHAT_PER_SECOND a second), the CLI's say goes again.
    let r = { code: 1, stdout: '', stderr: '' }
    for (let attempt = 0; attempt < 5 && r.code !== 0; attempt++) r = await runCli(['space', 'say', space, 'at', 'last', '--data', peer.dataDir])
    assert.equal(r.code, 0, r.stderr)
    const { chat } = await peer.api.request<{ chat: Array<{ text: string }> }>('GET', `/api/v0/space/${space}/chat`)
    assert.ok(chat.some(c => c.text === 'at last'))
    assert.ok(!chat.some(c => c.text === refusedText), 'what the CLI said was not sent is not in the history')
  })
})
