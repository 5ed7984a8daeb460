/**
 * Spaces between real `peerverse` processes on loopback: five peers join one space by its id
 * (found through the DHT); each one's movement is seen by the others; chat reaches all and a late
 * joiner gets the history; objects the owner places appear for all and survive everyone
 * restarting; the CLI's space commands work against a running peer.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { EventLog } from '../helpers/events.ts'

const set = new PeerSet()

interface Member { did: string, name: string, position: [number, number, number], near: boolean }
interface ObjectView { id: string, model: string, position: number[] }
interface ChatView { author: string, text: string }

const MODEL = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

async function cli (p: CliPeer, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data', p.dataDir])
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

async function who (p: CliPeer, space: string): Promise<Member[]> {
  return (await p.api.request<{ members: Member[] }>('GET', `/api/v0/space/${space}/who`)).members
}

async function objects (p: CliPeer, space: string): Promise<ObjectView[]> {
  return (await p.api.request<{ objects: ObjectView[] }>('GET', `/api/v0/space/${space}/objects`)).objects
}

async function chat (p: CliPeer, space: string): Promise<ChatView[]> {
  return (await p.api.request<{ chat: ChatView[] }>('GET', `/api/v0/space/${space}/chat`)).chat
}

describe('a space shared by five peer processes', { timeout: 300_000 }, () => {
  const peers: CliPeer[] = []
  const names = ['ada', 'bo', 'cy', 'di', 'ed']
  let space = ''

  before(async () => {
    peers.push(await set.start())
    // The other four start together, each told only the first.
    peers.push(...await Promise.all([1, 2, 3, 4].map(async () => await set.start({ bootstrap: [peers[0].addr] }))))
  })

  after(async () => { await set.cleanup() })

  it('the owner creates a space; four others join it by id', async () => {
    const out = await cli(peers[0], 'space', 'create', 'Town', 'square', '--name', names[0], '--json')
    const created = JSON.parse(out) as { id: string, name: string, owner: string }
    assert.equal(created.name, 'Town square')
    assert.equal(created.owner, peers[0].ready.did)
    space = created.id
    // The four join side by side.
    await Promise.all([1, 2, 3, 4].map(async i => {
      const joined = JSON.parse(await cli(peers[i], 'space', 'join', space, '--name', names[i], '--json')) as { id: string, owner: string }
      assert.equal(joined.id, space)
      assert.equal(joined.owner, peers[0].ready.did)
    }))
    await Promise.all(peers.map(async p => {
      await waitFor(`${p.ready.peerId} sees all five`, async () => (await who(p, space)).length === 5, 30_000)
    }))
    const listed = await cli(peers[3], 'space', 'who', space)
    for (const n of names) assert.match(listed, new RegExp(`  ${n}  `))
  })

  it('movement from each is seen by the others, and through the event stream', async () => {
    const log = await EventLog.open(peers[2])
    try {
      const spots = peers.map((_p, i) => [120 + i * 4, 0, 124 + i] as [number, number, number])
      for (const [i, p] of peers.entries()) {
        await p.api.request('POST', '/api/v0/space/move', { space, position: spots[i], rotation: [0, 0, 0, 1] })
      }
      for (const [i, p] of peers.entries()) {
        for (const [k, q] of peers.entries()) {
          if (k === i) continue
          await waitFor(`${names[i]} sees ${names[k]} move`, async () => {
            const m = (await who(p, space)).find(x => x.did === q.ready.did)
            return m != null && Math.abs(m.position[0] - spots[k][0]) < 1e-3 && Math.abs(m.position[2] - spots[k][2]) < 1e-3
          }, 20_000, 100)
        }
      }
      // Near members (all five stand within the interest radius) get frames, not just beacons.
      const near = (await who(peers[2], space)).filter(m => m.did !== peers[2].ready.did)
      assert.equal(near.filter(m => m.near).length, 4)
      const moves = log.events.filter(e => e.type === 'space:presence' && e.space === space && e.did === peers[4].ready.did)
      assert.ok(moves.length > 0, 'presence events reach the browser client')
    } finally {
      log.close()
    }
  })

  it('chat reaches all, and a late joiner gets the history', async () => {
    // The late joiner starts while the five talk (side by side); it joins once they have.
    const starting = set.start({ bootstrap: [peers[1].addr] })
    starting.catch(() => {})
    await Promise.all(peers.map(async (p, i) => await cli(p, 'space', 'say', space, `hi from ${names[i]}`)))
    await Promise.all(peers.map(async p => {
      await waitFor('all five lines', async () => {
        const texts = new Set((await chat(p, space)).map(c => c.text))
        return names.every(n => texts.has(`hi from ${n}`))
      }, 20_000)
    }))
    const late = await starting
    peers.push(late)
    await cli(late, 'space', 'join', space, '--name', 'late')
    await waitFor('the late joiner has the history', async () => {
      const texts = (await chat(late, space)).map(c => c.text)
      return names.every(n => texts.includes(`hi from ${n}`))
    }, 30_000)
    const printed = await cli(late, 'space', 'chat', space)
    assert.match(printed, /hi from ada/)
  })

  it('objects the owner places appear for all and survive everyone restarting', async () => {
    const place = async (at: string): Promise<string> => (await cli(peers[0], 'space', 'place', space, '--model', MODEL, '--at', at)).trim()
    const [id1, id2, id3] = await Promise.all([place('10,0,12'), place('30,0,40'), place('50,0,50')])
    await peers[0].api.request('POST', '/api/v0/space/object/move', { space, id: id2, position: [31, 0, 41] })
    await cli(peers[0], 'space', 'remove', space, id3)
    const expected = (list: ObjectView[]): boolean => {
      const byId = new Map(list.map(o => [o.id, o]))
      return list.length === 2 && byId.get(id1)?.position.join() === '10,0,12' && byId.get(id2)?.position.join() === '31,0,41'
    }
    await Promise.all(peers.map(async p => await waitFor(`${p.ready.peerId} sees the objects`, async () => expected(await objects(p, space)), 20_000)))
    // A member that is not an editor cannot place anything.
    const denied = await runCli(['space', 'place', space, '--model', MODEL, '--at', '5,0,5', '--data', peers[1].dataDir])
    assert.notEqual(denied.code, 0)
    assert.match(denied.stderr, /may not change object/)

    // Everyone stops; everyone comes back (new ports); the world is read back from disk.
    assert.deepEqual(await Promise.all(peers.map(async p => await set.stop(p))), peers.map(() => 0))
    const back: CliPeer[] = []
    back.push(await set.start({ dataDir: peers[0].dataDir }))
    back.push(...await Promise.all(peers.slice(1).map(async p => await set.start({ dataDir: p.dataDir, bootstrap: [back[0].addr] }))))
    for (const p of back) {
      assert.ok(expected(await objects(p, space)), `${p.ready.peerId} kept the objects`)
      const spaces = (await p.api.request<{ spaces: Array<{ id: string }> }>('GET', '/api/v0/space')).spaces
      assert.deepEqual(spaces.map(s => s.id), [space], 'a restarted peer is back in its space')
    }
    // And they find each other again.
    await waitFor('the owner sees the others again', async () => (await who(back[0], space)).length === back.length, 30_000)
  })
})
