import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { looksLikeLink, browserLink, checkLinkPeer, formatLink, InvalidLinkError, linkPeerId, MAX_LINK_ADDRESS_LENGTH, MAX_LINK_LENGTH, MAX_LINK_PEERS, MAX_LINK_SPACE_ID_LENGTH, parseLink, shareableAddresses } from '../../src/net/links.ts'

const PEER = '12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5'
const CIDV1 = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

describe('links', () => {
  it('round-trips every kind through the code and the browser form', () => {
    const peers = [`/ip4/127.0.0.1/tcp/7410/p2p/${PEER}`]
    for (const link of [{ kind: 'join' as const, target: CIDV1, peers }, { kind: 'space' as const, target: 'abc123', peers }, { kind: 'content' as const, target: CIDV1, peers: [] }]) {
      assert.deepEqual(parseLink(formatLink(link)), link)
      assert.deepEqual(parseLink(browserLink('http://127.0.0.1:7400/', link)), link)
    }
    assert.equal(linkPeerId(peers[0]), PEER)
  })

  it('takes an older space link with no peers', () => {
    assert.deepEqual(parseLink('http://127.0.0.1:7400/#space=abc'), { kind: 'space', target: 'abc', peers: [] })
  })

  it('refuses malformed links with InvalidLinkError', () => {
    const bad = [
      '', 'pv:', 'pv:join=notacid', 'pv:space=a%2Fb', 'pv:content=%E0%A4%A', 'pv:space=a&space=b',
      `pv:space=a&peer=${encodeURIComponent('/ip4/127.0.0.1/tcp/1')}`, 'pv:space=a&peer=garbage', 'pv:space=a&=x',
      'pv:space=' + 'a'.repeat(101), 'pv:space=a&peer=' + 'x'.repeat(MAX_LINK_LENGTH)
    ]
    for (const text of bad) assert.throws(() => parseLink(text), InvalidLinkError, text.slice(0, 60))
    const tooMany = 'pv:space=a' + `&peer=${encodeURIComponent(`/ip4/127.0.0.1/tcp/1/p2p/${PEER}`)}`.repeat(MAX_LINK_PEERS + 1)
    assert.throws(() => parseLink(tooMany), InvalidLinkError)
    // Past the length of one address, and of a space id.
    const long = `/dns4/${'a'.repeat(MAX_LINK_ADDRESS_LENGTH)}/tcp/1/p2p/${PEER}`
    assert.throws(() => checkLinkPeer(long), InvalidLinkError)
    assert.throws(() => parseLink(`pv:space=a&peer=${encodeURIComponent(long)}`), InvalidLinkError)
    assert.equal(parseLink(`pv:space=${'a'.repeat(MAX_LINK_SPACE_ID_LENGTH)}`).target.length, MAX_LINK_SPACE_ID_LENGTH)
    assert.throws(() => parseLink(`pv:space=${'a'.repeat(MAX_LINK_SPACE_ID_LENGTH + 1)}`), InvalidLinkError)
    assert.throws(() => formatLink({ kind: 'space', target: 'a', peers: Array(MAX_LINK_PEERS + 1).fill(`/ip4/127.0.0.1/tcp/1/p2p/${PEER}`) }), InvalidLinkError)
  })

  it('shares public, then LAN, then loopback, then relayed addresses, never unspecified ones', () => {
    const got = shareableAddresses([
      '/ip4/0.0.0.0/tcp/1', '/ip4/127.0.0.1/tcp/1', `/ip4/1.2.3.4/tcp/5/p2p/${PEER}/p2p-circuit`, '/ip4/192.168.1.2/tcp/1', '/ip4/8.8.8.8/tcp/1'
    ], PEER)
    assert.deepEqual(got, [
      `/ip4/8.8.8.8/tcp/1/p2p/${PEER}`, `/ip4/192.168.1.2/tcp/1/p2p/${PEER}`, `/ip4/127.0.0.1/tcp/1/p2p/${PEER}`, `/ip4/1.2.3.4/tcp/5/p2p/${PEER}/p2p-circuit/p2p/${PEER}`
    ])
  })

  it('tells a link from an id or CID, so a mistyped CID gets the CID error', () => {
    for (const t of ['pv:space=a', 'http://127.0.0.1:7400/#space=a', 'space=a&peer=x', ' pv:join=b ']) assert.equal(looksLikeLink(t), true, t)
    for (const t of ['not-a-cid', CIDV1, 'abc123', 'bafy…']) assert.equal(looksLikeLink(t), false, t)
  })
})
