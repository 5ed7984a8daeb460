/**
 * Content types: the extension decides when we know it, then magic bytes, then octet-stream; and
 * no content, however it starts, is sniffed into a type a browser would run script from.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { OCTET_STREAM, SNIFF_BYTES, contentType, sniff } from '../../src/content/mime.ts'

/** Bytes from a string of byte values, padded with zeros to SNIFF_BYTES. */
function head (s: string): Uint8Array {
  const out = new Uint8Array(Math.max(s.length, SNIFF_BYTES))
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

const none = new Uint8Array(0)

describe('contentType by extension', () => {
  const table: Array<[string, string]> = [
    ['scene.gltf', 'model/gltf+json'],
    ['tree.glb', 'model/gltf-binary'],
    ['a.png', 'image/png'],
    ['a.jpg', 'image/jpeg'],
    ['a.jpeg', 'image/jpeg'],
    ['a.webp', 'image/webp'],
    ['a.gif', 'image/gif'],
    ['a.svg', 'image/svg+xml'],
    ['a.ktx2', 'image/ktx2'],
    ['a.mp3', 'audio/mpeg'],
    ['a.ogg', 'audio/ogg'],
    ['a.oga', 'audio/ogg'],
    ['a.opus', 'audio/ogg'],
    ['a.wav', 'audio/wav'],
    ['a.flac', 'audio/flac'],
    ['a.m4a', 'audio/mp4'],
    ['a.mp4', 'video/mp4'],
    ['a.webm', 'video/webm'],
    ['a.json', 'application/json'],
    ['a.txt', 'text/plain; charset=utf-8'],
    ['index.html', 'text/html; charset=utf-8'],
    ['a.js', 'text/javascript'],
    ['a.css', 'text/css'],
    ['a.wasm', 'application/wasm'],
    ['a.bin', OCTET_STREAM],
    // Case, paths and several dots.
    ['TREE.GLB', 'model/gltf-binary'],
    ['Photo.JpEg', 'image/jpeg'],
    ['models/lod/tree.lod1.glb', 'model/gltf-binary'],
    ['archive.tar.json', 'application/json']
  ]
  for (const [name, type] of table) {
    it(`${name} → ${type}`, () => {
      assert.equal(contentType(name, none), type)
    })
  }

  it('the extension wins over the content', () => {
    assert.equal(contentType('really-a.png', head('glTF')), 'image/png')
    assert.equal(contentType('data.bin', head('\x89PNG\r\n\x1a\n')), OCTET_STREAM)
  })

  it('an unknown extension, none, a dotfile or a directory-looking name falls back to sniffing', () => {
    const png = head('\x89PNG\r\n\x1a\n')
    for (const name of [undefined, '', 'noext', 'a.unknownext', '.glb', 'dir.glb/file', 'a.']) {
      assert.equal(contentType(name, png), 'image/png', String(name))
      assert.equal(contentType(name, none), OCTET_STREAM, String(name))
    }
  })
})

describe('contentType by magic bytes', () => {
  const table: Array<[string, string, string]> = [
    ['glTF binary', 'glTF\x02\x00\x00\x00', 'model/gltf-binary'],
    ['PNG', '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR', 'image/png'],
    ['JPEG', '\xff\xd8\xff\xe0\x00\x10JFIF', 'image/jpeg'],
    ['GIF87a', 'GIF87a', 'image/gif'],
    ['GIF89a', 'GIF89a', 'image/gif'],
    ['KTX2', '\xabKTX 20\xbb\r\n\x1a\n', 'image/ktx2'],
    ['WebP', 'RIFF\x24\x00\x00\x00WEBPVP8 ', 'image/webp'],
    ['WAV', 'RIFF\x24\x00\x00\x00WAVEfmt ', 'audio/wav'],
    ['Ogg', 'OggS\x00\x02', 'audio/ogg'],
    ['FLAC', 'fLaC\x00\x00\x00\x22', 'audio/flac'],
    ['MP3 with ID3', 'ID3\x04\x00\x00', 'audio/mpeg'],
    ['MP3 frame, MPEG-1 layer III', '\xff\xfb\x90\x64', 'audio/mpeg'],
    ['MP3 frame, MPEG-2 layer III', '\xff\xf3\x48\xc4', 'audio/mpeg'],
    ['MP4', '\x00\x00\x00\x20ftypisom\x00\x00\x02\x00', 'video/mp4'],
    ['MP4 (mp42)', '\x00\x00\x00\x18ftypmp42', 'video/mp4'],
    ['M4A', '\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00', 'audio/mp4'],
    ['AVIF', '\x00\x00\x00\x1cftypavif', 'image/avif'],
    ['WebM', '\x1a\x45\xdf\xa3\x9f\x42\x86\x81', 'video/webm'],
    ['wasm', '\x00asm\x01\x00\x00\x00', 'application/wasm'],
    ['PDF', '%PDF-1.7\n', 'application/pdf']
  ]
  for (const [what, bytes, type] of table) {
    it(`${what} → ${type}`, () => {
      assert.equal(contentType(undefined, head(bytes)), type)
      assert.equal(contentType('unknown.xyz', head(bytes)), type)
    })
  }

  it('near misses and truncated heads are octet-stream', () => {
    for (const bytes of ['glT', 'GIF88a', 'RIFF\x00\x00\x00\x00AVI ', 'RIFF', '\x89PNG', '\x00asm'.slice(0, 3), '%PDF',
      '\xff\xf1\x50\x80', // AAC ADTS (layer bits 00): not MP3
      '\xff\xfb\xf0\x00', // bad bitrate index
      '\xff\xfb\x9c\x00', // reserved sample rate
      '\xff\xeb\x90\x00', // reserved MPEG version
      '\x00\x00\x00\x20ftyp'.slice(0, 7)]) {
      const exact = Uint8Array.from(bytes, c => c.charCodeAt(0))
      assert.equal(contentType(undefined, exact), OCTET_STREAM, JSON.stringify(bytes))
    }
    assert.equal(contentType(undefined, none), OCTET_STREAM)
  })

  it('never sniffs HTML, SVG, XML or script', () => {
    const active = ['<!DOCTYPE html><html><script>alert(1)</script>', '<html>', '<script>alert(1)</script>',
      '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', '<svg onload=alert(1)>',
      '\xef\xbb\xbf<html>', 'function f () {}', '{"json": true}', 'plain text']
    for (const s of active) {
      const bytes = new TextEncoder().encode(s)
      assert.equal(contentType(undefined, bytes), OCTET_STREAM, s)
      assert.equal(contentType('page.unknown', bytes), OCTET_STREAM, s)
    }
  })

  it('sniffing yields only passive types, whatever the bytes (property)', () => {
    const passive = /^(image\/(png|jpeg|gif|webp|ktx2|avif)|audio\/(mpeg|ogg|flac|wav|mp4)|video\/(mp4|webm)|model\/gltf-binary|application\/(wasm|pdf))$/
    fc.assert(fc.property(fc.uint8Array({ maxLength: 32 }), bytes => {
      const type = sniff(bytes)
      assert.ok(type === null || passive.test(type), String(type))
      assert.ok(!/html|xml|script|svg|text/.test(contentType(undefined, bytes)))
    }), { seed: 7, numRuns: 5000 })
  })
})
