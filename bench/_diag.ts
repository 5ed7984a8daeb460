import { performance } from 'node:perf_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNetwork, type Network } from '../src/net/network.ts'
const nets: Network[] = []
for (let i = 0; i < 50; i++) {
  const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], dhtMode: 'server', relayServer: false, connectionManager: { inboundConnectionThreshold: 1e6 } })
  await net.start()
  if (i > 0) await net.dial(nets[0].getMultiaddrs())
  if (i > 1) await net.dial(nets[Math.floor(Math.random() * (i - 1)) + 1].getMultiaddrs())
  nets.push(net)
}
let got = 0
for (const n of nets) { n.services.pubsub.addEventListener('message', () => { got++ }); n.services.pubsub.subscribe('t') }
await new Promise(r => setTimeout(r, 5000))
console.log('mesh', nets.map(n => (n.services.pubsub as any).getMeshPeers('t').length).join(','))
for (let m = 0; m < 15; m++) {
  got = 0
  const e = performance.eventLoopUtilization(); const c = process.cpuUsage(); const t0 = performance.now()
  await nets[m].services.pubsub.publish('t', new Uint8Array(1024).fill(m))
  const tp = performance.now() - t0
  while (got < 49 && performance.now() - t0 < 5000) await new Promise(r => setImmediate(r))
  const t1 = performance.now() - t0
  const cu = process.cpuUsage(c)
  console.log(`msg ${m}: publish ${tp.toFixed(1)} ms, all ${got} in ${t1.toFixed(1)} ms, cpu ${((cu.user + cu.system) / 1000).toFixed(1)} ms elu ${performance.eventLoopUtilization(e).utilization.toFixed(2)}`)
  await new Promise(r => setTimeout(r, 300))
}
await Promise.all(nets.map(n => n.stop()))
