import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import fc from 'fast-check'
import {
  ed25519KeyFromSeed, ed25519Sign, ed25519Verify, generateEd25519Key, didFromPublicKey, publicKeyFromDid,
  signRecord, verifyRecord, verifyRecordSync, initIdentity, loadIdentity, createPeerBinding, verifyPeerBinding, MAX_RECORD_BYTES,
  DID_KEY_CACHE_SIZE, isDid
} from '../../src/identity/index.ts'
import { decodeFlatRecord } from '../../src/identity/flat-record.ts'
import { recordCidString, recordCidSync, recordId } from '../../src/identity/record.ts'
import { seeded, type Random } from '../helpers/random.ts'
import { fromHex } from '../helpers/bytes.ts'

const rfc8032 = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/ed25519-rfc8032.json'), 'utf8'))
const didVectors = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/did-key-ed25519.json'), 'utf8'))

describe('ed25519', () => {
  for (const [i, v] of rfc8032.vectors.entries()) {
    it(`matches RFC 8032 test ${i + 1}`, () => {
      const key = ed25519KeyFromSeed(fromHex(v.secretKey))
      assert.equal(Buffer.from(key.publicKey).toString('hex'), v.publicKey)
      const sig = ed25519Sign(key, fromHex(v.message))
      assert.equal(Buffer.from(sig).toString('hex'), v.signature)
      assert.equal(ed25519Verify(fromHex(v.publicKey), fromHex(v.message), fromHex(v.signature)), true)
      const bad = fromHex(v.signature)
      bad[0] ^= 1
      assert.equal(ed25519Verify(fromHex(v.publicKey), fromHex(v.message), bad), false)
    })
  }

  it('rejects malformed keys and signatures by name', () => {
    assert.throws(() => ed25519KeyFromSeed(new Uint8Array(31)), { name: 'InvalidKeyError' })
    assert.throws(() => ed25519Verify(new Uint8Array(31), new Uint8Array(0), new Uint8Array(64)), { name: 'InvalidKeyError' })
    const key = generateEd25519Key()
    assert.equal(ed25519Verify(key.publicKey, new Uint8Array(1), new Uint8Array(63)), false)
  })
})

describe('did:key', () => {
  for (const v of didVectors.vectors) {
    it(`encodes and decodes ${v.did.slice(0, 24)}...`, () => {
      const pub = base58btc.baseDecode(v.publicKeyBase58)
      assert.equal(didFromPublicKey(pub), v.did)
      assert.deepEqual(publicKeyFromDid(v.did), pub)
    })
  }

  it('round-trips any 32-byte key (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), pub => {
      const did = didFromPublicKey(pub)
      assert.match(did, /^did:key:z6Mk/)
      assert.deepEqual(publicKeyFromDid(did), pub)
    }), { seed: 42, numRuns: 200 })
  })

  it('rejects what is not an Ed25519 did:key', () => {
    for (const bad of ['', 'did:web:example.com', 'did:key:', 'did:key:z', 'did:key:zTjsVPtY', 'did:key:m' + 'A'.repeat(40), 'did:key:z0OIl', 42, null,
      'did:key:' + base58btc.encode(Uint8Array.of(0xe7, 0x01, ...new Uint8Array(33))), 'did:key:z' + '1'.repeat(200)]) {
      assert.throws(() => publicKeyFromDid(bad), { name: 'InvalidDidError' }, String(bad))
    }
  })
  it('remembers at most DID_KEY_CACHE_SIZE keys: past it every did still decodes to its own key, callers own their copy, bad dids still throw', () => {
    const seedOf = (i: number): Uint8Array => {
      const seed = new Uint8Array(32).fill(0xd1)
      new DataView(seed.buffer).setUint32(0, i)
      return seed
    }
    const n = DID_KEY_CACHE_SIZE + 10
    const pubs: Uint8Array[] = []
    const all: string[] = []
    for (let i = 0; i < n; i++) {
      pubs.push(ed25519KeyFromSeed(seedOf(i)).publicKey)
      all.push(didFromPublicKey(pubs[i]))
    }
    assert.equal(new Set(all).size, n)
    // First decodings (each remembered, the oldest forgotten past the bound), then again from the
    // cache: both give the right key.
    for (let i = 0; i < n; i++) assert.deepEqual(publicKeyFromDid(all[i]), pubs[i], `first decoding of did ${i}`)
    for (let i = n - 1; i >= n - 20; i--) assert.deepEqual(publicKeyFromDid(all[i]), pubs[i], `cached did ${i}`)
    // The first ones were pushed out by the DID_KEY_CACHE_SIZE after them: decoded again, right again.
    for (let i = 0; i < 20; i++) assert.deepEqual(publicKeyFromDid(all[i]), pubs[i], `evicted did ${i}`)

    // A returned key is the caller's: changing it changes nothing for the next caller, whether it
    // came from a fresh decoding or from the cache.
    const fresh = didFromPublicKey(ed25519KeyFromSeed(seedOf(n + 1)).publicKey)
    const expected = publicKeyFromDid(fresh).slice()
    for (let k = 0; k < 3; k++) {
      const got = publicKeyFromDid(fresh)
      assert.deepEqual(got, expected)
      got.fill(0)
      got[0] = k + 1
    }
    assert.deepEqual(publicKeyFromDid(fresh), expected)
    const a = publicKeyFromDid(all[n - 1])
    const b = publicKeyFromDid(all[n - 1])
    assert.notEqual(a, b)
    a.reverse()
    assert.deepEqual(b, pubs[n - 1])
    assert.deepEqual(publicKeyFromDid(all[n - 1]), pubs[n - 1])

    // With the cache full, what is not a did:key is still refused every time, including near
    // misses of cached dids; isDid agrees.
    const cached = all[n - 1]
    const bad = ['', 'did:web:example.com', 'did:key:', 'did:key:z', 'did:key:zTjsVPtY', cached.slice(0, -1), cached + '1', cached.replace('did:key:z', 'did:key:m'),
      'did:key:' + base58btc.encode(Uint8Array.of(0xe7, 0x01, ...pubs[n - 1])), cached + 'z'.repeat(128), 42, null, undefined, { did: cached }]
    for (let round = 0; round < 2; round++) {
      for (const x of bad) {
        assert.throws(() => publicKeyFromDid(x), { name: 'InvalidDidError' }, String(x))
        assert.equal(isDid(x), false, String(x))
      }
    }
    // isDid: true for a cached did, one pushed out of the cache, and one never seen before.
    assert.equal(isDid(cached), true)
    for (let i = 10; i <= 30; i++) assert.equal(isDid(all[i]), true, `did ${i}, decoded before and since pushed out`)
    assert.equal(isDid(didFromPublicKey(ed25519KeyFromSeed(seedOf(n + 2)).publicKey)), true)
  })
})

describe('signed records', () => {
  const key = ed25519KeyFromSeed(fromHex(rfc8032.vectors[0].secretKey))

  it('names records by the same CID string as the multiformats library (seeded, 2,000 cases and edge digests)', () => {
    const rand = seeded(99)
    const digests = [new Uint8Array(32), new Uint8Array(32).fill(0xff), ...Array.from({ length: 2000 }, () => rand.bytes(32))]
    for (const d of digests) {
      assert.equal(recordCidString(d), CID.createV1(dagCbor.code, createDigest(sha256.code, d)).toString())
    }
    for (let i = 0; i < 500; i++) {
      const bytes = rand.bytes(rand.int(400))
      assert.equal(recordId(bytes), recordCidSync(bytes).toString())
    }
    assert.throws(() => recordCidString(new Uint8Array(31)), RangeError)
  })

  it('signs, verifies and names a record by the CID of its bytes', async () => {
    const { bytes, cid, record } = await signRecord(key, 'test/note', { text: 'hello', n: 7 })
    assert.equal(record.author, didFromPublicKey(key.publicKey))
    const again = await verifyRecord(bytes)
    assert.equal(again.cid.toString(), cid.toString())
    assert.equal(cid.version, 1)
    assert.equal(cid.code, dagCbor.code)
    assert.deepEqual(again.record.payload, { text: 'hello', n: 7 })
  })

  it('is deterministic: same key and payload, same bytes and CID (fixture)', async () => {
    const a = await signRecord(key, 'test/note', { b: 1, a: 2 })
    const b = await signRecord(key, 'test/note', { a: 2, b: 1 })
    assert.equal(a.cid.toString(), b.cid.toString())
    // Fixed encoding of version 1 records: changing the format changes this CID.
    assert.equal(a.cid.toString(), 'bafyreibfcqit6oyhmnz3bhbkez7fet4t4hlbmhlag46gp3p4qdiev6aerm')
  })

  it('rejects any mutation of a valid record with a named error (property)', async () => {
    const { bytes } = await signRecord(key, 'test/note', { text: 'the quick brown fox', n: 1 })
    await fc.assert(fc.asyncProperty(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), async (pos, flip) => {
      const mutated = Uint8Array.from(bytes)
      mutated[pos] ^= flip
      await assert.rejects(verifyRecord(mutated), (err: Error) => [
        'MalformedRecordError', 'NonCanonicalEncodingError', 'InvalidSignatureError', 'InvalidDidError'
      ].includes(err.name))
    }), { seed: 7, numRuns: 300 })
  })

  it('verifies the signature over bytes cut from the record: random payloads of every shape verify, any flipped byte fails (seeded)', async () => {
    const rand = seeded(20261125)
    const keys = Array.from({ length: 4 }, (_, i) => ed25519KeyFromSeed(new Uint8Array(32).fill(0x50 + i)))
    const named = ['MalformedRecordError', 'NonCanonicalEncodingError', 'InvalidSignatureError', 'InvalidDidError', 'RecordTooLargeError', 'UnexpectedRecordTypeError']
    let signatureFailures = 0
    const seenLengths = new Set<string>()
    for (let r = 0; r < 200; r++) {
      // Every 25th record carries a byte string over 65535 bytes (a 5-byte CBOR length header).
      const budget = { left: r % 25 === 0 ? 200_000 : 20_000 }
      const payload = r % 25 === 0 ? { big: rand.bytes(65_536 + rand.int(4000)), rest: randomValue(rand, 3, budget) } : randomValue(rand, 4, budget)
      const type = 't'.repeat(1 + rand.int(64))
      const { bytes, cid } = await signRecord(keys[r % keys.length], type, payload)
      assert.ok(bytes.length <= MAX_RECORD_BYTES)
      seenLengths.add(bytes.length < 256 ? 'small' : bytes.length < 65_536 ? 'medium' : 'large')
      const ok = verifyRecordSync(bytes)
      assert.equal(ok.cid.toString(), cid.toString(), `record ${r}`)
      assert.deepEqual(dagCbor.encode(ok.record.payload), dagCbor.encode(payload), `record ${r}`)
      // The last byte (end of the payload), the first after the signature, and seeded positions.
      const positions = [bytes.length - 1, 8 + 2 + 64, ...Array.from({ length: 6 }, () => rand.int(bytes.length))]
      for (const pos of positions) {
        const mutated = Uint8Array.from(bytes)
        mutated[pos] ^= 1 + rand.int(255)
        assert.throws(() => verifyRecordSync(mutated), (err: Error) => {
          if (err.name === 'InvalidSignatureError') signatureFailures++
          return named.includes(err.name)
        }, `record ${r}, byte ${pos}`)
      }
    }
    assert.deepEqual([...seenLengths].sort(), ['large', 'medium', 'small'])
    // Most flips land in strings and bytes and keep the encoding canonical: only the signature, over
    // the cut bytes, catches those.
    assert.ok(signatureFailures > 200, `${signatureFailures} flips caught by the signature`)
  })

  it('reads flat records on a fast path that accepts only the canonical encoding and equals DAG-CBOR\'s decode (seeded property)', async () => {
    const rand = seeded(4711)
    const k = ed25519KeyFromSeed(new Uint8Array(32).fill(0x61))
    // Unsigned integers on both sides of every CBOR head boundary, and of the safe integers.
    const uints: Array<number | bigint> = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 0xffffffff, 0x100000000, Number.MAX_SAFE_INTEGER, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n]
    const keyChars = 'abcdefghijklmnopqrstuvwxyz_0123456789'
    const flatValue = (): unknown => {
      switch (rand.int(3)) {
        case 0: return uints[rand.int(uints.length)]
        case 1: return Array.from({ length: EDGE_LENGTHS[rand.int(EDGE_LENGTHS.length)] }, () => keyChars[rand.int(keyChars.length)]).join('')
        default: return rand.bytes(EDGE_LENGTHS[rand.int(EDGE_LENGTHS.length)])
      }
    }
    /** Is `bytes` the canonical encoding of `value`, and is `value` what DAG-CBOR decodes from them? */
    const canonicalOf = (bytes: Uint8Array, value: unknown): void => {
      assert.deepStrictEqual(value, dagCbor.decode(bytes))
      assert.ok(Buffer.from(dagCbor.encode(value)).equals(Buffer.from(bytes)), 'encodes back to the same bytes')
    }
    let fast = 0
    let general = 0
    for (let r = 0; r < 300; r++) {
      const payload: Record<string, unknown> = {}
      for (let i = rand.int(8); i > 0; i--) payload[Array.from({ length: 1 + rand.int(12) }, () => keyChars[rand.int(keyChars.length)]).join('')] = flatValue()
      // Every fourth record is not flat: a nested map, a list, a negative number, a float, non-ASCII text, null.
      const notFlat = r % 4 === 3
      if (notFlat) payload.z = [{ a: 1 }, [1], -5, 0.5, 'é', null][rand.int(6)]
      const { bytes } = await signRecord(k, 'test/flat', payload)
      const read = decodeFlatRecord(bytes)
      if (notFlat) {
        assert.equal(read, undefined, `record ${r} is not flat`)
        general++
      } else {
        assert.ok(read !== undefined, `record ${r} is flat`)
        canonicalOf(bytes, read)
        assert.equal(verifyRecordSync(bytes).cid.toString(), (await verifyRecord(Uint8Array.from(bytes))).cid.toString())
        fast++
      }
      // Mutations: flips, truncation, a byte more. Whatever the fast path accepts is canonical.
      for (let m = 0; m < 12; m++) {
        let mutated = Uint8Array.from(bytes)
        if (m === 0) mutated = mutated.subarray(0, rand.int(bytes.length))
        else if (m === 1) mutated = Uint8Array.from([...bytes, rand.int(256)])
        else mutated[rand.int(bytes.length)] ^= 1 + rand.int(255)
        const got = decodeFlatRecord(mutated)
        if (got !== undefined) canonicalOf(mutated, got)
      }
    }
    assert.ok(fast > 150 && general > 50, `${fast} fast, ${general} general`)
  })

  it('keeps non-canonical flat records off the fast path and refuses them by name', async () => {
    const { record } = await signRecord(key, 'test/flat', { a: 1, bb: 'x' })
    const head = (major: number, n: number, width: 1 | 2 | 4 | 8): Uint8Array => {
      const out = new Uint8Array(1 + width)
      out[0] = (major << 5) | { 1: 24, 2: 25, 4: 26, 8: 27 }[width]
      for (let i = 0; i < width; i++) out[width - i] = Math.floor(n / 256 ** i) & 0xff
      return out
    }
    const enc = (v: unknown): Uint8Array => dagCbor.encode(v)
    const envelope = (payloadBytes: Uint8Array): Uint8Array => new Uint8Array(Buffer.concat([
      Uint8Array.of(0xa5), enc('v'), enc(1), enc('sig'), enc(record.sig), enc('type'), enc(record.type), enc('author'), enc(record.author), enc('payload'), payloadBytes
    ]))
    const canonical = envelope(enc({ a: 1, bb: 'x' }))
    assert.ok(decodeFlatRecord(canonical) !== undefined)
    verifyRecordSync(canonical)
    const variants: Record<string, Uint8Array> = {
      'an integer in a longer head': envelope(new Uint8Array(Buffer.concat([Uint8Array.of(0xa2), enc('a'), head(0, 1, 1), enc('bb'), enc('x')]))),
      'a text length in a longer head': envelope(new Uint8Array(Buffer.concat([Uint8Array.of(0xa2), enc('a'), enc(1), enc('bb'), head(3, 1, 2), Buffer.from('x')]))),
      'keys out of order': envelope(new Uint8Array(Buffer.concat([Uint8Array.of(0xa2), enc('bb'), enc('x'), enc('a'), enc(1)]))),
      'a key twice': envelope(new Uint8Array(Buffer.concat([Uint8Array.of(0xa2), enc('a'), enc(1), enc('a'), enc(2)]))),
      'a map length in a longer head': envelope(new Uint8Array(Buffer.concat([head(5, 2, 1), enc('a'), enc(1), enc('bb'), enc('x')]))),
      'an indefinite-length map': envelope(new Uint8Array(Buffer.concat([Uint8Array.of(0xbf), enc('a'), enc(1), enc('bb'), enc('x'), Uint8Array.of(0xff)]))),
      'a trailing byte': new Uint8Array([...canonical, 0])
    }
    for (const [what, bytes] of Object.entries(variants)) {
      assert.equal(decodeFlatRecord(bytes), undefined, what)
      assert.throws(() => verifyRecordSync(bytes), (err: Error) => ['NonCanonicalEncodingError', 'MalformedRecordError'].includes(err.name), what)
    }
    // A __proto__ key is left to the general path, which keeps it as data.
    const proto = envelope(new Uint8Array(Buffer.concat([Uint8Array.of(0xa1), enc('__proto__'), enc(1)])))
    assert.equal(decodeFlatRecord(proto), undefined)
  })

  it('refuses a record whose signature has any other length, whatever its CBOR length header', async () => {
    const { record } = await signRecord(key, 'test/note', { text: 'sized' })
    for (const n of [0, 1, 23, 24, 63, 65, 255, 256, 65_535, 65_536, 70_000]) {
      const sig = new Uint8Array(n).fill(7)
      sig.set(record.sig.subarray(0, Math.min(n, 64)))
      const bytes = dagCbor.encode({ ...record, sig })
      assert.throws(() => verifyRecordSync(bytes), { name: 'InvalidSignatureError' }, `sig of ${n} bytes`)
    }
  })

  it('rejects non-canonical, oversized, wrong-type and forged records', async () => {
    const { record, bytes } = await signRecord(key, 'test/note', { text: 'x' })
    // Same content, keys out of canonical order: a second encoding of one record is refused.
    const entries = Object.entries(record).reverse()
    const nonCanonical = encodeMapInOrder(entries)
    assert.notDeepEqual(nonCanonical, bytes)
    await assert.rejects(verifyRecord(nonCanonical), { name: 'NonCanonicalEncodingError' })
    await assert.rejects(verifyRecord(new Uint8Array(MAX_RECORD_BYTES + 1)), { name: 'RecordTooLargeError' })
    await assert.rejects(verifyRecord(bytes, { maxBytes: 10 }), { name: 'RecordTooLargeError' })
    await assert.rejects(verifyRecord(bytes, { type: 'other' }), { name: 'UnexpectedRecordTypeError' })
    await assert.rejects(verifyRecord(Uint8Array.of(0xff, 0x00)), { name: 'MalformedRecordError' })
    await assert.rejects(verifyRecord(dagCbor.encode([1, 2])), { name: 'MalformedRecordError' })
    const other = generateEd25519Key()
    const forged = dagCbor.encode({ ...record, author: didFromPublicKey(other.publicKey) })
    await assert.rejects(verifyRecord(forged), { name: 'InvalidSignatureError' })
    await assert.rejects(verifyRecord(dagCbor.encode({ ...record, extra: 1 })), { name: 'MalformedRecordError' })
    await assert.rejects(signRecord(key, 'test/note', { f: undefined }), { name: 'MalformedRecordError' })
  })

  it('binds a peer id to a did, and refuses a binding for another peer', async () => {
    const binding = await createPeerBinding(key, '12D3KooWHA2LP2mTvhM1oESTY8J2ed6VB5tx4T83Go7E9ECAXYoq', 1)
    const { did } = await verifyPeerBinding(binding.bytes, '12D3KooWHA2LP2mTvhM1oESTY8J2ed6VB5tx4T83Go7E9ECAXYoq')
    assert.equal(did, didFromPublicKey(key.publicKey))
    await assert.rejects(verifyPeerBinding(binding.bytes, '12D3KooWQoXVonuzJtdC5Jo343gN3iBE7gUvq4F9X5StDWQkiWDA'), { name: 'PeerBindingMismatchError' })
    const note = await signRecord(key, 'test/note', { peerId: 'x', issued: 1 })
    await assert.rejects(verifyPeerBinding(note.bytes, 'x'), { name: 'UnexpectedRecordTypeError' })
  })
})

describe('keystore', () => {
  it('creates an owner-only identity once and never overwrites it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerverse-id-'))
    try {
      const first = await initIdentity(join(dir, 'data'))
      assert.equal(first.created, true)
      for (const f of ['identity.json', 'peer.key']) {
        assert.equal((await stat(join(dir, 'data', f))).mode & 0o777, 0o600, f)
      }
      const before = await readFile(join(dir, 'data', 'identity.json'))
      const second = await initIdentity(join(dir, 'data'))
      assert.equal(second.created, false)
      assert.equal(second.did, first.did)
      assert.deepEqual(await readFile(join(dir, 'data', 'identity.json')), before)
      assert.equal((await loadIdentity(join(dir, 'data'))).peerKey.equals(first.peerKey), true)
      await assert.rejects(loadIdentity(join(dir, 'missing')), { name: 'IdentityNotFoundError' })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

/** Encodes a map with its entries in the given order (a deliberately non-canonical CBOR encoding). */
function encodeMapInOrder (entries: Array<[string, unknown]>): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0xa0 + entries.length)]
  for (const [k, v] of entries) {
    parts.push(dagCbor.encode(k), dagCbor.encode(v))
  }
  return new Uint8Array(Buffer.concat(parts))
}

/** Lengths on both sides of each CBOR length-header boundary (24, 256, 65536). */
const EDGE_LENGTHS = [0, 1, 23, 24, 25, 255, 256, 257, 1000, 4096]

/** A random DAG-CBOR value: nested maps (short and long keys), lists, strings, bytes, ints, bigints, floats, null, booleans. */
function randomValue (rand: Random, depth: number, budget: { left: number }): unknown {
  const kinds = depth > 0 && budget.left > 64 ? 11 : 9
  const pick = rand.int(kinds)
  const length = (): number => {
    const n = rand.int(2) === 0 ? EDGE_LENGTHS[rand.int(EDGE_LENGTHS.length)] : rand.int(64)
    return Math.max(0, Math.min(n, budget.left))
  }
  switch (pick) {
    case 0: return null
    case 1: return rand.int(2) === 0
    case 2: return rand.int(2) === 0 ? rand.int(24) : rand.int(0x7fffffff) - 0x3fffffff
    case 3: return (rand.int(2) === 0 ? 1 : -1) * (rand.int(0x1fffff) * 0x100000000 + rand.int(0x100000000))
    case 4: {
      // Beyond the safe integers, up to 64 bits either way.
      const big = (BigInt(rand.int(0x100000000)) << 32n) | BigInt(rand.int(0x100000000))
      return rand.int(2) === 0 ? big : -big - 1n
    }
    case 5: return (rand.int(1_000_000) + 0.5) / (1 + rand.int(1000))
    case 6: {
      const n = length()
      budget.left -= n
      return Array.from({ length: n }, () => 'aé€𝄞x'[rand.int(5)]).join('')
    }
    case 7:
    case 8: {
      const n = length()
      budget.left -= n
      return rand.bytes(n)
    }
    case 9: {
      const n = rand.int(6)
      return Array.from({ length: n }, () => randomValue(rand, depth - 1, budget))
    }
    default: {
      const out: Record<string, unknown> = {}
      const n = rand.int(7)
      for (let i = 0; i < n; i++) {
        const keyLength = [1, 3, 23, 24, 30, 255, 256, 300][rand.int(8)]
        const k = String.fromCharCode(97 + rand.int(26)).repeat(keyLength) + String(i)
        budget.left -= k.length
        out[k] = randomValue(rand, depth - 1, budget)
      }
      return out
    }
  }
}
