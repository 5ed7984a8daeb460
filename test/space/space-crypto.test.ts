import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createDecipheriv } from 'node:crypto'
import fc from 'fast-check'
import { x25519 } from '@noble/curves/ed25519.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { didFromPublicKey, ed25519KeyFromSeed, generateEd25519Key, signRecord, type Ed25519Key } from '../../src/identity/index.ts'
import {
  createKeyEnvelope, decryptGroup, encryptGroup, generateGroupKey, openKeyEnvelope, openSealed, sealTo,
  verifyKeyEnvelope, x25519PublicKeyFromDid, x25519SecretFromEd25519,
  GROUP_HEADER_BYTES, GROUP_KEY_BYTES, GROUP_OVERHEAD_BYTES, MAX_EPOCH, MAX_GROUP_PLAINTEXT_BYTES,
  MAX_KEY_ENVELOPE_BYTES, MAX_MESSAGES_PER_EPOCH, MAX_SEAL_PLAINTEXT_BYTES, MAX_SPACE_MEMBERS,
  MAX_ENVELOPE_SPACE_LENGTH, SEAL_INFO, SEAL_OVERHEAD_BYTES, SEALED_GROUP_KEY_BYTES, SPACE_KEYS_TYPE
} from '../../src/space/crypto.ts'
import { fromHex, toHex, utf8 } from '../helpers/bytes.ts'

const seeded = (n: number): Ed25519Key => ed25519KeyFromSeed(new Uint8Array(32).fill(n))
const didOf = (k: Ed25519Key): string => didFromPublicKey(k.publicKey)

const owner = seeded(1)
const alice = seeded(2)
const bob = seeded(3)
const carol = seeded(4)
const OWNER = didOf(owner)
const ALICE = didOf(alice)
const BOB = didOf(bob)
const CAROL = didOf(carol)
const SPACE = 'space-1'

// Made once with this module from the seeded keys above; they pin the formats.
const VECTORS = {
  /** sealTo(ALICE, 'peerverse sealed vector', aad 'aad'). */
  sealed: '017634f3fd463ccfa7fc3c4bfd60ea1551e6056a2772dfb18f3eb7dfa26800466532ee315ee1c427fe7793b5c5676d40d127bd6bf207aa38a77878dc2cae5bac7e411b50ef2da615',
  /** encryptGroup(key 00..1f, epoch 7, 'hello, space', aad 'space-1/chat'). */
  group: '01000000071be4fe53c6565f62594c589f51b002375f59f67e4b7f7933de84dd9bd78276f9f011fbd2ff3247cf',
  /** createKeyEnvelope(owner, 'space-1', 3, key 00..1f, [ALICE, BOB]). */
  envelope: 'a5617601637369675840520bdc9005941cdcce556ba60f838d092d379dd2259b6b22d5d14beeec922d010511ebc385ad5d700ae807b9b9e76bee11c32d624877bc2271f4e85f28c8c0016474797065747065657276657273652f73706163652d6b65797366617574686f7278386469643a6b65793a7a364d6b6f6e334e656364364e6b6b79666f476f48786964327a6e476335394c55334b376d756261526346624c664c58677061796c6f6164a36565706f6368036573706163656773706163652d31667365616c6564a278386469643a6b65793a7a364d6b6f39685467674d776a535445614a615055664536747163793278765536426e4e713365336f387156426979485851012828279af4f41933fd3b02bd2dd58bef40a37cc4b725dba6e59d3a11677b2f19350f61d3ffc65b4a764dbd8925be96a17a64a49a1df3a6fd3b97a700e3e7634cbb0f0c9d4c9d5c8a5c726c8c60f5c20b78386469643a6b65793a7a364d6b7652584e596345374d4d6475796e575467654b624461543169696a44534338705a71585a63387248507266325851014f60f734dfccac62737489f0d856fe3a967854abe315cf00c186f14b68b56e3ddd32be9d9c57ff5bc27258fb6293f672bb2f5487d9c4231b27c76002f9c49b1c2fc00d88a187e664cb6e0d51fca27f61'
}
const VECTOR_GROUP_KEY = new Uint8Array(32).map((_, i) => i)

// Ed25519 public keys of small order (identity, order 2, 4 and 8 points).
const SMALL_ORDER_KEYS = [
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000000',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'
]

function flipEach (bytes: Uint8Array, check: (b: Uint8Array, i: number) => void): void {
  for (let i = 0; i < bytes.length; i++) {
    const b = Uint8Array.from(bytes)
    b[i] ^= 0x01
    check(b, i)
  }
}

describe('space crypto: Ed25519 to X25519', () => {
  it('matches libsodium crypto_sign_ed25519_{pk,sk}_to_curve25519 (ed25519_convert test)', () => {
    const key = ed25519KeyFromSeed(fromHex('421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee'))
    assert.equal(toHex(x25519PublicKeyFromDid(didOf(key))), 'f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50')
    assert.equal(toHex(x25519SecretFromEd25519(key)), '8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166')
  })

  it('maps public and secret sides to the same X25519 key pair', () => {
    for (let i = 0; i < 8; i++) {
      const k = generateEd25519Key()
      assert.deepEqual(x25519.getPublicKey(x25519SecretFromEd25519(k)), x25519PublicKeyFromDid(didOf(k)))
    }
  })

  it('refuses small-order and malformed recipients', () => {
    for (const pub of SMALL_ORDER_KEYS) {
      assert.throws(() => sealTo(didFromPublicKey(fromHex(pub)), utf8('x')), { name: 'InvalidRecipientError' }, pub)
    }
    assert.throws(() => sealTo(didFromPublicKey(new Uint8Array(32).fill(0xff)), utf8('x')), { name: 'InvalidRecipientError' })
    assert.throws(() => sealTo('did:web:example.com', utf8('x')), { name: 'InvalidRecipientError' })
  })
})

describe('space crypto: sealed boxes', () => {
  it('opens the fixed vector, and the vector follows the documented construction', () => {
    const sealed = fromHex(VECTORS.sealed)
    assert.equal(new TextDecoder().decode(openSealed(alice, sealed, utf8('aad'))), 'peerverse sealed vector')
    // Recompute with independent parts: noble X25519 and HKDF, Node's ChaCha20-Poly1305.
    const ephPub = sealed.subarray(1, 33)
    const recipient = x25519PublicKeyFromDid(ALICE)
    const shared = x25519.getSharedSecret(x25519SecretFromEd25519(alice), ephPub)
    const key = hkdf(sha256, shared, new Uint8Array([...ephPub, ...recipient]), utf8(SEAL_INFO), 32)
    const body = sealed.subarray(33, sealed.length - 16)
    const d = createDecipheriv('chacha20-poly1305', key, new Uint8Array(12), { authTagLength: 16 })
    d.setAuthTag(sealed.subarray(sealed.length - 16))
    d.setAAD(new Uint8Array([1, ...utf8('aad')]), { plaintextLength: body.length })
    const plain = Buffer.concat([d.update(body), d.final()])
    assert.equal(plain.toString(), 'peerverse sealed vector')
  })

  it('round-trips, is randomised, and binds aad', () => {
    const a = sealTo(BOB, utf8('secret'))
    const b = sealTo(BOB, utf8('secret'))
    assert.notDeepEqual(a, b)
    assert.equal(a.length, 6 + SEAL_OVERHEAD_BYTES)
    assert.deepEqual(openSealed(bob, a), utf8('secret'))
    assert.deepEqual(openSealed(bob, sealTo(BOB, new Uint8Array(0))), new Uint8Array(0))
    const withAad = sealTo(BOB, utf8('secret'), utf8('ctx'))
    assert.deepEqual(openSealed(bob, withAad, utf8('ctx')), utf8('secret'))
    assert.throws(() => openSealed(bob, withAad), { name: 'SealOpenError' })
    assert.throws(() => openSealed(bob, withAad, utf8('ctX')), { name: 'SealOpenError' })
  })

  it('cannot be opened by anyone else', () => {
    const sealed = sealTo(ALICE, utf8('for alice'))
    for (const k of [bob, carol, owner]) assert.throws(() => openSealed(k, sealed), { name: 'SealOpenError' })
  })

  it('fails on any flipped bit, truncation, unknown version or low-order ephemeral key', () => {
    const sealed = sealTo(ALICE, utf8('tamper me'))
    flipEach(sealed, (b, i) => { assert.throws(() => openSealed(alice, b), { name: 'SealOpenError' }, `byte ${i}`) })
    flipEach(sealed, (b, i) => {
      b[i] ^= 0x80 // the top bit of the ephemeral key is ignored by X25519, yet still refused (it is in the salt)
      assert.throws(() => openSealed(alice, b), { name: 'SealOpenError' }, `byte ${i}`)
    })
    for (let n = 0; n < SEAL_OVERHEAD_BYTES; n++) assert.throws(() => openSealed(alice, sealed.subarray(0, n)), { name: 'SealOpenError' })
    assert.throws(() => openSealed(alice, new Uint8Array([2, ...sealed.subarray(1)])), { name: 'SealOpenError' })
    for (const u of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
      const b = Uint8Array.from(sealed)
      b.set(u, 1)
      assert.throws(() => openSealed(alice, b), { name: 'SealOpenError' })
    }
  })

  it('enforces MAX_SEAL_PLAINTEXT_BYTES at its edge', () => {
    const big = new Uint8Array(MAX_SEAL_PLAINTEXT_BYTES).fill(7)
    assert.deepEqual(openSealed(carol, sealTo(CAROL, big)), big)
    assert.throws(() => sealTo(CAROL, new Uint8Array(MAX_SEAL_PLAINTEXT_BYTES + 1)), { name: 'InvalidSpaceCryptoInputError' })
    assert.throws(() => openSealed(carol, new Uint8Array(MAX_SEAL_PLAINTEXT_BYTES + SEAL_OVERHEAD_BYTES + 1).fill(1)), { name: 'SealOpenError' })
  })

  it('random bytes fail only with SealOpenError (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
      assert.throws(() => openSealed(alice, bytes), { name: 'SealOpenError' })
    }), { seed: 7, numRuns: 300 })
  })
})

describe('space crypto: key envelopes', () => {
  it('opens the fixed vector for each member and no one else', () => {
    const bytes = fromHex(VECTORS.envelope)
    assert.deepEqual(openKeyEnvelope(alice, ALICE, bytes, OWNER, SPACE), { epoch: 3, groupKey: VECTOR_GROUP_KEY })
    assert.deepEqual(openKeyEnvelope(bob, BOB, bytes, OWNER, SPACE), { epoch: 3, groupKey: VECTOR_GROUP_KEY })
    assert.throws(() => openKeyEnvelope(carol, CAROL, bytes, OWNER, SPACE), { name: 'NotAMemberError' })
    assert.throws(() => openKeyEnvelope(owner, OWNER, bytes, OWNER, SPACE), { name: 'NotAMemberError' })
  })

  it('round-trips, dropping duplicate members', async () => {
    const key = generateGroupKey()
    const env = await createKeyEnvelope(owner, SPACE, 0, key, [ALICE, BOB, ALICE, OWNER])
    assert.equal(env.record.type, SPACE_KEYS_TYPE)
    assert.deepEqual(Object.keys(env.record.payload.sealed).sort(), [ALICE, BOB, OWNER].sort())
    for (const [k, did] of [[alice, ALICE], [bob, BOB], [owner, OWNER]] as const) {
      assert.deepEqual(openKeyEnvelope(k, did, env.bytes, OWNER, SPACE), { epoch: 0, groupKey: key })
    }
    assert.equal(verifyKeyEnvelope(env.bytes, OWNER, SPACE).epoch, 0)
  })

  it('rejects an envelope from anyone but the owner, or for another space', async () => {
    const key = generateGroupKey()
    const forged = await createKeyEnvelope(carol, SPACE, 1, key, [ALICE])
    assert.throws(() => openKeyEnvelope(alice, ALICE, forged.bytes, OWNER, SPACE), { name: 'EnvelopeOwnerMismatchError' })
    const other = await createKeyEnvelope(owner, 'space-2', 1, key, [ALICE])
    assert.throws(() => openKeyEnvelope(alice, ALICE, other.bytes, OWNER, SPACE), { name: 'EnvelopeSpaceMismatchError' })
    assert.throws(() => openKeyEnvelope(alice, BOB, other.bytes, OWNER, 'space-2'), { name: 'InvalidKeyError' })
    const note = await signRecord(owner, 'peerverse/other', { space: SPACE, epoch: 1, sealed: {} })
    assert.throws(() => openKeyEnvelope(alice, ALICE, note.bytes, OWNER, SPACE), { name: 'UnexpectedRecordTypeError' })
  })

  it('rejects tampered envelope bytes', () => {
    const bytes = fromHex(VECTORS.envelope)
    flipEach(bytes, (b, i) => {
      assert.throws(() => openKeyEnvelope(alice, ALICE, b, OWNER, SPACE), (err: Error) => {
        return ['InvalidSignatureError', 'MalformedRecordError', 'NonCanonicalEncodingError', 'InvalidDidError',
          'UnexpectedRecordTypeError', 'EnvelopeOwnerMismatchError', 'EnvelopeSpaceMismatchError', 'NotAMemberError'].includes(err.name)
      }, `byte ${i}`)
    })
  })

  it('binds a sealed key to its space and epoch, so it cannot be moved to another envelope', async () => {
    const key = generateGroupKey()
    const env = await createKeyEnvelope(owner, SPACE, 5, key, [ALICE])
    const sealed = env.record.payload.sealed
    const moved = await signRecord(owner, SPACE_KEYS_TYPE, { space: 'space-2', epoch: 5, sealed })
    assert.throws(() => openKeyEnvelope(alice, ALICE, moved.bytes, OWNER, 'space-2'), { name: 'SealOpenError' })
    const replayed = await signRecord(owner, SPACE_KEYS_TYPE, { space: SPACE, epoch: 6, sealed })
    assert.throws(() => openKeyEnvelope(alice, ALICE, replayed.bytes, OWNER, SPACE), { name: 'SealOpenError' })
  })

  it('rejects malformed payloads signed by the owner', async () => {
    const box = new Uint8Array(SEALED_GROUP_KEY_BYTES)
    const bad: unknown[] = [
      'not a map',
      [SPACE, 1, {}],
      { space: SPACE, epoch: 1 },
      { space: SPACE, epoch: 1, sealed: {}, extra: 1 },
      { space: SPACE, epoch: -1, sealed: {} },
      { space: SPACE, epoch: MAX_EPOCH + 1, sealed: {} },
      { space: SPACE, epoch: 1.5, sealed: {} },
      { space: SPACE, epoch: 1, sealed: [] },
      { space: SPACE, epoch: 1, sealed: { 'not-a-did': box } },
      { space: SPACE, epoch: 1, sealed: { [ALICE]: box.subarray(1) } },
      { space: SPACE, epoch: 1, sealed: { [ALICE]: 'text' } }
    ]
    for (const payload of bad) {
      const r = await signRecord(owner, SPACE_KEYS_TYPE, payload)
      assert.throws(() => openKeyEnvelope(alice, ALICE, r.bytes, OWNER, SPACE), { name: 'MalformedKeyEnvelopeError' }, JSON.stringify(payload))
    }
  })

  it('checks its inputs at the boundary', async () => {
    const key = generateGroupKey()
    await assert.rejects(createKeyEnvelope(owner, SPACE, 1, key.subarray(1), [ALICE]), { name: 'InvalidSpaceCryptoInputError' })
    await assert.rejects(createKeyEnvelope(owner, SPACE, MAX_EPOCH + 1, key, [ALICE]), { name: 'InvalidSpaceCryptoInputError' })
    await assert.rejects(createKeyEnvelope(owner, '', 1, key, [ALICE]), { name: 'InvalidSpaceCryptoInputError' })
    await assert.rejects(createKeyEnvelope(owner, 's'.repeat(MAX_ENVELOPE_SPACE_LENGTH + 1), 1, key, [ALICE]), { name: 'InvalidSpaceCryptoInputError' })
    await assert.rejects(createKeyEnvelope(owner, SPACE, 1, key, ['bob']), { name: 'InvalidRecipientError' })
    const longest = await createKeyEnvelope(owner, 's'.repeat(MAX_ENVELOPE_SPACE_LENGTH), MAX_EPOCH, key, [ALICE])
    assert.equal(openKeyEnvelope(alice, ALICE, longest.bytes, OWNER, 's'.repeat(MAX_ENVELOPE_SPACE_LENGTH)).epoch, MAX_EPOCH)
  })

  it('holds MAX_SPACE_MEMBERS members within MAX_KEY_ENVELOPE_BYTES, and no more', async () => {
    const dids = [ALICE]
    while (dids.length < MAX_SPACE_MEMBERS + 1) dids.push(didOf(generateEd25519Key()))
    const key = generateGroupKey()
    const full = await createKeyEnvelope(owner, 'x'.repeat(MAX_ENVELOPE_SPACE_LENGTH), 1, key, dids.slice(0, MAX_SPACE_MEMBERS))
    assert.ok(full.bytes.length <= MAX_KEY_ENVELOPE_BYTES, `${full.bytes.length} bytes`)
    assert.deepEqual(openKeyEnvelope(alice, ALICE, full.bytes, OWNER, 'x'.repeat(MAX_ENVELOPE_SPACE_LENGTH)).groupKey, key)
    await assert.rejects(createKeyEnvelope(owner, SPACE, 1, key, dids), { name: 'TooManyMembersError' })
    // A peer that signs one anyway (boxes need not be real to be counted).
    const sealed = Object.fromEntries(dids.map(d => [d, new Uint8Array(SEALED_GROUP_KEY_BYTES)]))
    const over = await signRecord(owner, SPACE_KEYS_TYPE, { space: SPACE, epoch: 1, sealed })
    assert.throws(() => openKeyEnvelope(alice, ALICE, over.bytes, OWNER, SPACE), { name: 'MalformedKeyEnvelopeError' })
    const huge = await signRecord(owner, SPACE_KEYS_TYPE, { space: SPACE, epoch: 1, sealed: {}, pad: new Uint8Array(MAX_KEY_ENVELOPE_BYTES) })
    assert.throws(() => openKeyEnvelope(alice, ALICE, huge.bytes, OWNER, SPACE), { name: 'RecordTooLargeError' })
  })
})

describe('space crypto: group messages', () => {
  it('decrypts the fixed vector', () => {
    const out = decryptGroup(e => e === 7 ? VECTOR_GROUP_KEY : undefined, fromHex(VECTORS.group), utf8('space-1/chat'))
    assert.equal(out.epoch, 7)
    assert.equal(new TextDecoder().decode(out.plaintext), 'hello, space')
  })

  it('round-trips with fresh nonces, and binds aad', () => {
    const key = generateGroupKey()
    const keys = (e: number): Uint8Array | undefined => e === 2 ? key : undefined
    const a = encryptGroup(key, 2, utf8('hi'), utf8('ctx'))
    assert.equal(a.length, 2 + GROUP_OVERHEAD_BYTES)
    assert.deepEqual(decryptGroup(keys, a, utf8('ctx')), { epoch: 2, plaintext: utf8('hi') })
    assert.throws(() => decryptGroup(keys, a, utf8('ctX')), { name: 'DecryptError' })
    assert.throws(() => decryptGroup(keys, a, new Uint8Array(0)), { name: 'DecryptError' })
    assert.throws(() => decryptGroup(() => generateGroupKey(), a, utf8('ctx')), { name: 'DecryptError' })
    const nonces = new Set<string>()
    for (let i = 0; i < 1000; i++) nonces.add(toHex(encryptGroup(key, 2, utf8('hi'), utf8('ctx')).subarray(5, GROUP_HEADER_BYTES)))
    assert.equal(nonces.size, 1000)
  })

  it('fails on any flipped bit, including the header, even when every epoch has the key', () => {
    const key = generateGroupKey()
    const msg = encryptGroup(key, 9, utf8('tamper me'), utf8('ctx'))
    flipEach(msg, (b, i) => { assert.throws(() => decryptGroup(() => key, b, utf8('ctx')), { name: 'DecryptError' }, `byte ${i}`) })
    flipEach(msg.subarray(0, 5), (head, i) => {
      const b = new Uint8Array([...head, ...msg.subarray(5)])
      assert.throws(() => decryptGroup(e => e === 9 ? key : undefined, b, utf8('ctx')),
        { name: i === 0 ? 'DecryptError' : 'UnknownEpochError' }, `byte ${i}`)
    })
    for (let n = 0; n < GROUP_OVERHEAD_BYTES; n++) assert.throws(() => decryptGroup(() => key, msg.subarray(0, n), utf8('ctx')), { name: 'DecryptError' })
  })

  it('enforces epoch and size limits at their edges', () => {
    const key = generateGroupKey()
    assert.equal(decryptGroup(() => key, encryptGroup(key, MAX_EPOCH, utf8('x'), utf8('')), utf8('')).epoch, MAX_EPOCH)
    for (const e of [-1, MAX_EPOCH + 1, 1.5, NaN]) assert.throws(() => encryptGroup(key, e, utf8('x'), utf8('')), { name: 'InvalidSpaceCryptoInputError' })
    assert.throws(() => encryptGroup(key.subarray(0, GROUP_KEY_BYTES - 1), 0, utf8('x'), utf8('')), { name: 'InvalidSpaceCryptoInputError' })
    const big = new Uint8Array(MAX_GROUP_PLAINTEXT_BYTES).fill(3)
    assert.deepEqual(decryptGroup(() => key, encryptGroup(key, 0, big, utf8('')), utf8('')).plaintext, big)
    assert.throws(() => encryptGroup(key, 0, new Uint8Array(MAX_GROUP_PLAINTEXT_BYTES + 1), utf8('')), { name: 'InvalidSpaceCryptoInputError' })
    const tooBig = new Uint8Array(MAX_GROUP_PLAINTEXT_BYTES + GROUP_OVERHEAD_BYTES + 1)
    tooBig[0] = 1
    assert.throws(() => decryptGroup(() => key, tooBig, utf8('')), { name: 'DecryptError' })
  })

  it('documents a nonce-collision bound of at most 2^-32 at MAX_MESSAGES_PER_EPOCH', () => {
    assert.ok(MAX_MESSAGES_PER_EPOCH ** 2 / 2 ** 97 <= 2 ** -32)
  })

  it('random bytes fail only with DecryptError or UnknownEpochError (property)', () => {
    const key = generateGroupKey()
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, known) => {
      assert.throws(() => decryptGroup(() => known ? key : undefined, bytes, utf8('')), (err: Error) => err.name === 'DecryptError' || err.name === 'UnknownEpochError')
    }), { seed: 11, numRuns: 300 })
  })

  it('round-trips any plaintext and aad (property)', () => {
    const key = generateGroupKey()
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 40 }), fc.nat({ max: MAX_EPOCH }), (plain, aad, epoch) => {
      assert.deepEqual(decryptGroup(() => key, encryptGroup(key, epoch, plain, aad), aad), { epoch, plaintext: plain })
    }), { seed: 12, numRuns: 200 })
  })
})

describe('space crypto: membership over epochs', () => {
  it('a removed member cannot read the next epoch', async () => {
    const k1 = generateGroupKey()
    const k2 = generateGroupKey()
    const e1 = await createKeyEnvelope(owner, SPACE, 1, k1, [OWNER, ALICE, BOB])
    const e2 = await createKeyEnvelope(owner, SPACE, 2, k2, [OWNER, ALICE]) // Bob removed
    const aliceKeys = new Map<number, Uint8Array>()
    const bobKeys = new Map<number, Uint8Array>()
    for (const env of [e1, e2]) {
      const { epoch, groupKey } = openKeyEnvelope(alice, ALICE, env.bytes, OWNER, SPACE)
      aliceKeys.set(epoch, groupKey)
    }
    const b1 = openKeyEnvelope(bob, BOB, e1.bytes, OWNER, SPACE)
    bobKeys.set(b1.epoch, b1.groupKey)
    assert.throws(() => openKeyEnvelope(bob, BOB, e2.bytes, OWNER, SPACE), { name: 'NotAMemberError' })

    const aad = utf8(`${SPACE}/chat`)
    const old = encryptGroup(k1, 1, utf8('before'), aad)
    const next = encryptGroup(aliceKeys.get(2) as Uint8Array, 2, utf8('after'), aad)
    assert.deepEqual(decryptGroup(e => bobKeys.get(e), old, aad).plaintext, utf8('before'))
    assert.deepEqual(decryptGroup(e => aliceKeys.get(e), old, aad).plaintext, utf8('before'))
    assert.deepEqual(decryptGroup(e => aliceKeys.get(e), next, aad).plaintext, utf8('after'))
    assert.throws(() => decryptGroup(e => bobKeys.get(e), next, aad), { name: 'UnknownEpochError' })
    assert.throws(() => decryptGroup(() => bobKeys.get(1), next, aad), { name: 'DecryptError' })
  })
})
