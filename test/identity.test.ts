import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { base58btc } from 'multiformats/bases/base58'
import fc from 'fast-check'
import {
  ed25519KeyFromSeed, ed25519Sign, ed25519Verify, generateEd25519Key, didFromPublicKey, publicKeyFromDid,
  signRecord, verifyRecord, initIdentity, loadIdentity, createPeerBinding, verifyPeerBinding, MAX_RECORD_BYTES
} from '../src/identity/index.ts'

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))
const rfc8032 = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/ed25519-rfc8032.json'), 'utf8'))
const didVectors = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/did-key-ed25519.json'), 'utf8'))

describe('ed25519', () => {
  for (const [i, v] of rfc8032.vectors.entries()) {
    it(`matches RFC 8032 test ${i + 1}`, () => {
      const key = ed25519KeyFromSeed(hex(v.secretKey))
      assert.equal(Buffer.from(key.publicKey).toString('hex'), v.publicKey)
      const sig = ed25519Sign(key, hex(v.message))
      assert.equal(Buffer.from(sig).toString('hex'), v.signature)
      assert.equal(ed25519Verify(hex(v.publicKey), hex(v.message), hex(v.signature)), true)
      const bad = hex(v.signature)
      bad[0] ^= 1
      assert.equal(ed25519Verify(hex(v.publicKey), hex(v.message), bad), false)
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
})

describe('signed records', () => {
  const key = ed25519KeyFromSeed(hex(rfc8032.vectors[0].secretKey))

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
