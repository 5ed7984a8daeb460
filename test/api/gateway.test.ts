/**
 * The trustless gateway on real peers (`peerverse start` processes on 127.0.0.1): raw blocks and
 * CARs that an independent reader (@ipld/car) checks, the CAR variants (dag-scope, entity-bytes,
 * paths, dups), every out-of-spec request refused by name, the token unless `gateway.open`, and
 * the API's Host and Origin checks either way. The open peer holds nothing at first: it streams
 * what it serves from the other peer over the swarm.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { defaultConfig, mergeConfig, validateConfig } from '../../src/node/config.ts'
import { MAX_ACCEPT_ENTRIES, MAX_ENTITY_BYTES_DIGITS, negotiate } from '../../src/api/routes/gateway.ts'
import { checkCar } from '../helpers/car.ts'
import { PeerSet, type CliPeer } from '../helpers/cli-peer.ts'
import { seededBytes } from '../helpers/random.ts'

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

/** One request with the headers given as they are (Host included), the whole answer read. */
async function http (peer: CliPeer, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const url = new URL(peer.api.url)
  return await new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method, headers }, res => {
      const chunks: Buffer[] = []
      res.on('data', c => chunks.push(c as Buffer))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

function errorName (a: Answer): string {
  return (JSON.parse(a.body.toString()) as { error: string }).error
}

const CAR = 'application/vnd.ipld.car'
const RAW = 'application/vnd.ipld.raw'

describe('trustless gateway', { timeout: 300_000 }, () => {
  const peers = new PeerSet()
  let a: CliPeer
  let open: CliPeer
  let file: string
  let dir: string
  let leaves: string[]
  const bytes = seededBytes(2 * 1024 * 1024 + 10, 40)
  const auth = (): Record<string, string> => ({ authorization: `Bearer ${a.api.token}` })

  before(async () => {
    a = await peers.start()
    open = await peers.start({ bootstrap: [a.addr], config: { gateway: { open: true }, content: { noHoldersTimeoutMs: 2000 } } })
    const added = await (await a.api.raw('POST', '/api/v0/content/add?name=f.bin', { body: Buffer.from(bytes) })).json() as { cid: string }
    file = added.cid
    dir = (await a.api.request<{ cid: string }>('POST', '/api/v0/content/directory', { entries: [{ name: 'f.bin', cid: file }] })).cid
    const car = await checkCar((await http(a, `/ipfs/${file}?format=car`, auth())).body, file)
    leaves = [...car.keys()].filter(k => k !== file)
  })
  after(async () => { await peers.cleanup() })

  it('needs the API token unless gateway.open; open, it streams what it fetches from the swarm', async () => {
    assert.equal(errorName(await http(a, `/ipfs/${file}?format=car`)), 'Unauthorized')
    assert.equal((await http(a, `/ipfs/${file}?format=car`)).status, 401)
    assert.equal(errorName(await http(a, `/ipfs/${file}?format=car&token=${a.api.token}`)), 'QueryTokenRefused')
    assert.equal((await http(a, `/ipfs/${file}?format=car`, auth())).status, 200)
    // The open peer holds none of it: the CAR streams from A over the swarm, whole and verified.
    const res = await http(open, `/ipfs/${file}?format=car`)
    assert.equal(res.status, 200)
    const blocks = await checkCar(res.body, file)
    assert.equal(blocks.size, 1 + leaves.length)
    // The directory above it, which the open peer does not hold either.
    const whole = await checkCar((await http(open, `/ipfs/${dir}?format=car`)).body, dir)
    assert.equal(whole.size, 2 + leaves.length)
  })

  it('gateway.open is a boolean setting, off by default', () => {
    assert.equal(defaultConfig('/x').gateway.open, false)
    assert.throws(() => validateConfig(mergeConfig(defaultConfig('/x'), { gateway: { open: 'yes' as unknown as boolean } })), (err: Error) => err.name === 'ConfigError' && /gateway\.open/.test(err.message))
  })

  it('applies the Host and Origin checks, open or not', async () => {
    for (const [peer, extra] of [[a, auth()], [open, {}]] as const) {
      const host = await http(peer, `/ipfs/${file}?format=raw`, { ...extra, host: 'evil.example' })
      assert.equal(host.status, 403)
      assert.equal(errorName(host), 'ForbiddenHost')
      const origin = await http(peer, `/ipfs/${file}?format=raw`, { ...extra, origin: 'http://evil.example' })
      assert.equal(origin.status, 403)
      assert.equal(errorName(origin), 'ForbiddenOrigin')
    }
  })

  it('serves one raw block that hashes to its CID, with the spec headers, HEAD and If-None-Match', async () => {
    const res = await http(a, `/ipfs/${leaves[0]}`, { ...auth(), accept: RAW })
    assert.equal(res.status, 200)
    assert.deepEqual((await sha256.digest(res.body)).digest, CID.parse(leaves[0]).multihash.digest)
    assert.equal(res.headers['content-type'], RAW)
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
    assert.match(String(res.headers['cache-control']), /immutable/)
    assert.equal(res.headers['content-disposition'], `attachment; filename="${leaves[0]}.bin"`)
    const etag = String(res.headers.etag)
    const head = await http(a, `/ipfs/${leaves[0]}?format=raw`, auth(), 'HEAD')
    assert.equal(head.status, 200)
    assert.equal(head.body.length, 0)
    assert.equal(Number(head.headers['content-length']), res.body.length)
    assert.equal((await http(a, `/ipfs/${leaves[0]}?format=raw`, { ...auth(), 'if-none-match': etag })).status, 304)
    // The probe: the empty identity CID.
    const probe = await http(open, '/ipfs/bafkqaaa?format=raw')
    assert.equal(probe.status, 200)
    assert.equal(probe.body.length, 0)
    const probeCar = await http(open, '/ipfs/bafkqaaa', { accept: CAR })
    assert.equal(probeCar.status, 200)
    assert.equal((await checkCar(probeCar.body, 'bafkqaaa', { whole: false })).size, 0)
  })

  it('CAR variants: a path, dag-scope=block and entity, entity-bytes, dups=y', async () => {
    const path = await http(a, `/ipfs/${dir}/f.bin?format=car`, auth())
    assert.equal(path.status, 200)
    assert.equal(path.headers['x-ipfs-roots'], `${dir},${file}`)
    const blocks = await checkCar(path.body, file)
    assert.ok(blocks.has(dir), 'the directory block proving the path comes first')
    assert.equal(blocks.size, 2 + leaves.length)
    const block = await checkCar((await http(a, `/ipfs/${dir}?format=car&dag-scope=block`, auth())).body, dir, { whole: false })
    assert.deepEqual([...block.keys()], [dir])
    const entity = await checkCar((await http(a, `/ipfs/${dir}?format=car&dag-scope=entity`, auth())).body, dir, { whole: false })
    assert.deepEqual([...entity.keys()], [dir])
    const ranged = await http(a, `/ipfs/${file}?format=car&entity-bytes=1048576:1048586`, auth())
    assert.deepEqual([...(await checkCar(ranged.body, file, { whole: false })).keys()], [file, leaves[1]])
    assert.notEqual(ranged.headers.etag, (await http(a, `/ipfs/${file}?format=car`, auth(), 'HEAD')).headers.etag)
    const tail = await http(a, `/ipfs/${file}?format=car&entity-bytes=-5:*`, auth())
    assert.deepEqual([...(await checkCar(tail.body, file, { whole: false })).keys()], [file, leaves[2]])
    const head = await http(a, `/ipfs/${dir}?format=car`, auth(), 'HEAD')
    assert.equal(head.status, 200)
    assert.equal(head.body.length, 0)
    assert.equal(head.headers['content-disposition'], `attachment; filename="${dir}.car"`)
    assert.equal(head.headers.vary, 'Accept')
    const dups = await http(a, `/ipfs/${file}`, { ...auth(), accept: `${CAR}; version=1; order=dfs; dups=y` })
    assert.equal(dups.headers['content-type'], `${CAR}; version=1; order=dfs; dups=y`)
  })

  it('refuses out-of-spec requests by name', async () => {
    const cases: Array<[string, Record<string, string>, number, string, string?]> = [
      [`/ipfs/${file}`, {}, 400, 'MissingFormatError'],
      [`/ipfs/${file}`, { accept: '*/*' }, 400, 'MissingFormatError'],
      [`/ipfs/${file}`, { accept: 'text/html' }, 406, 'NotAcceptableError'],
      [`/ipfs/${file}`, { accept: `${CAR}; version=2` }, 406, 'NotAcceptableError'],
      [`/ipfs/${file}`, { accept: `${CAR}; order=bfs` }, 406, 'NotAcceptableError'],
      [`/ipfs/${file}?format=tar`, {}, 400, 'UnsupportedFormatError'],
      [`/ipfs/${dir}/f.bin`, { accept: RAW }, 400, 'RawPathError'],
      [`/ipfs/${file}?format=raw&dag-scope=all`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&dag-scope=most`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&car-version=2`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&car-dups=maybe`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&entity-bytes=ten`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&entity-bytes=10:5`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&dag-scope=all&entity-bytes=0:5`, {}, 400, 'InvalidCarParamError'],
      [`/ipfs/${file}?format=car&entity-bytes=${bytes.length}:*`, {}, 400, 'EntityBytesOutOfRangeError'],
      [`/ipfs/${dir}/nothing?format=car`, {}, 404, 'PathNotFoundError'],
      [`/ipfs/${dir}//f.bin?format=car`, {}, 400, 'InvalidPath'],
      ['/ipfs/not-a-cid?format=car', {}, 400, 'InvalidCidError'],
      [`/ipfs/${file}?format=car`, {}, 405, 'MethodNotAllowed', 'POST']
    ]
    for (const [path, headers, status, name, method] of cases) {
      const res = await http(a, path, { ...auth(), ...headers }, method)
      assert.equal(res.status, status, `${path} ${JSON.stringify(headers)}`)
      assert.equal(errorName(res), name, `${path} ${JSON.stringify(headers)}`)
    }
    // A root no one holds: 404 (after the open peer's 2 s look for holders); only-if-cached: 412 at once.
    const missing = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    for (const format of ['raw', 'car']) {
      const gone = await http(open, `/ipfs/${missing}?format=${format}`)
      assert.equal(gone.status, 404, format)
      assert.equal(errorName(gone), 'NoProvidersError')
    }
    const res = await http(open, `/ipfs/${missing}?format=raw`, { 'cache-control': 'only-if-cached' })
    assert.equal(res.status, 412)
    assert.equal(errorName(res), 'NotCachedError')
  })
})

describe('gateway negotiation', () => {
  const cid = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
  const ask = (query: string, accept?: string): ReturnType<typeof negotiate> => negotiate(new URL(`http://h/ipfs/${cid}${query}`), accept == null ? {} : { accept })

  it('weighs Accept by q, then order; format= wins over Accept; car-* query parameters over Accept parameters', () => {
    assert.equal(ask('', `${CAR};q=0.5, ${RAW}`).format, 'raw')
    assert.equal(ask('', `${RAW};q=0.1, ${CAR}`).format, 'car')
    assert.equal(ask('', `text/html, ${CAR};version=2, ${RAW};q=0.2`).format, 'raw')
    assert.equal(ask('?format=car', RAW).format, 'car')
    assert.equal(ask('', `${CAR}; dups=y`).dups, true)
    assert.equal(ask('?car-dups=n', `${CAR}; dups=y`).dups, false)
    assert.equal(ask('?format=car&entity-bytes=0:*').scope, 'entity')
    assert.deepEqual(ask('?format=car&entity-bytes=-10:-1').entityBytes, { from: -10, to: -1 })
    assert.equal(ask('/', RAW).path.length, 0, 'a trailing slash names no path')
    assert.throws(() => ask('', `${RAW};q=0`), (err: Error) => err.name === 'MissingFormatError')
  })

  it(`weighs the first MAX_ACCEPT_ENTRIES (${MAX_ACCEPT_ENTRIES}) media ranges of Accept, no more`, () => {
    const others = (n: number): string[] => Array.from({ length: n }, (_, i) => `text/x-${i}`)
    assert.equal(ask('', [...others(MAX_ACCEPT_ENTRIES - 1), RAW].join(', ')).format, 'raw')
    assert.throws(() => ask('', [...others(MAX_ACCEPT_ENTRIES), RAW].join(', ')), (err: Error) => err.name === 'NotAcceptableError')
  })

  it(`takes entity-bytes offsets of up to MAX_ENTITY_BYTES_DIGITS (${MAX_ENTITY_BYTES_DIGITS}) digits`, () => {
    const digits = '9'.repeat(MAX_ENTITY_BYTES_DIGITS)
    assert.equal(ask(`?format=car&entity-bytes=0:${digits}`).entityBytes?.to, Number(digits))
    assert.throws(() => ask(`?format=car&entity-bytes=0:${digits}9`), (err: Error) => err.name === 'InvalidCarParamError')
  })
})
