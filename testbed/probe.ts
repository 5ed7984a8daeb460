/**
 * Node-only. A tiny network probe the testbed runs inside its namespaces to show what the NATs
 * and link caps do (test/net/testbed.test.ts):
 *   echo PORT            UDP and TCP on PORT: answer each datagram or connection with the
 *                        address and port it came from, as one JSON line
 *   agent PORT           a UDP socket bound to PORT, driven by stdin lines
 *                        (`udp HOST PORT TEXT`, `tcp HOST PORT`: TCP from the same local PORT);
 *                        prints each datagram received and each TCP answer as a JSON line
 *   send HOST PORT TEXT  one UDP datagram, then exit
 *   sink PORT            one TCP connection: prints {bytes, ms} once it ends
 *   source HOST PORT N   sends N bytes over TCP, then exits
 * Prints `ready` once listening.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import { createInterface } from 'node:readline'

const [mode, ...args] = process.argv.slice(2)
const out = (v: unknown): void => { process.stdout.write(JSON.stringify(v) + '\n') }

if (mode === 'echo') {
  const port = Number(args[0])
  const udp = dgram.createSocket('udp4')
  udp.on('message', (msg, rinfo) => {
    udp.send(JSON.stringify({ seen: `${rinfo.address}:${rinfo.port}`, text: msg.toString() }), rinfo.port, rinfo.address)
  })
  const tcp = net.createServer(sock => {
    sock.on('error', () => {})
    sock.end(JSON.stringify({ seen: `${sock.remoteAddress ?? ''}:${sock.remotePort ?? 0}` }) + '\n')
  })
  let up = 0
  const ready = (): void => { if (++up === 2) process.stdout.write('ready\n') }
  udp.bind(port, ready)
  tcp.listen(port, ready)
} else if (mode === 'agent') {
  const port = Number(args[0])
  const udp = dgram.createSocket('udp4')
  udp.on('message', (msg, rinfo) => {
    let answer: Record<string, unknown> = { text: msg.toString() }
    try { answer = JSON.parse(msg.toString()) } catch {}
    out({ from: `${rinfo.address}:${rinfo.port}`, ...answer })
  })
  udp.bind(port, () => { process.stdout.write('ready\n') })
  createInterface({ input: process.stdin }).on('line', line => {
    const [cmd, host, p, ...text] = line.trim().split(' ')
    if (cmd === 'udp') udp.send(text.join(' '), Number(p), host)
    else if (cmd === 'tcp') {
      const sock = net.connect({ host, port: Number(p), localPort: port })
      let buf = ''
      sock.on('data', d => { buf += d })
      sock.on('end', () => { out({ tcp: `${host}:${p}`, ...JSON.parse(buf) }) })
      sock.on('error', err => { out({ tcp: `${host}:${p}`, error: (err as NodeJS.ErrnoException).code ?? err.message }) })
    } else if (cmd === 'quit') process.exit(0)
  })
} else if (mode === 'send') {
  const udp = dgram.createSocket('udp4')
  udp.send(args.slice(2).join(' '), Number(args[1]), args[0], () => { udp.close() })
} else if (mode === 'sink') {
  const server = net.createServer(sock => {
    let bytes = 0
    let first = 0
    sock.on('data', d => { if (bytes === 0) first = performance.now(); bytes += d.length })
    sock.on('end', () => { out({ bytes, ms: performance.now() - first }); sock.end(); server.close() })
  })
  server.listen(Number(args[0]), () => { process.stdout.write('ready\n') })
} else if (mode === 'source') {
  const total = Number(args[2])
  const chunk = Buffer.alloc(64 * 1024, 7)
  const sock = net.connect({ host: args[0], port: Number(args[1]) }, () => {
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent)
        sent += n
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { sock.once('drain', pump); return }
      }
      sock.end()
    }
    pump()
  })
  sock.on('close', () => { process.exit(0) })
} else {
  process.stderr.write(`unknown probe mode ${String(mode)}\n`)
  process.exit(2)
}
