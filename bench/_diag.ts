import { performance } from 'node:perf_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNetwork, type Network } from '../src/net/network.ts'
const nets: Network[] = []
const elu0 = performance.eventLoopUtilization()
for (let i = 0; i < 50; i++) {
  const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], dhtMode: 'server', relayServer: false, connectionManager: { inboundConnectionThreshold: 1e6 } })
  await net.start()
  if (i > 0) await net.dial(nets[0].getMultiaddrs())
  if (i > 1) await net.dial(nets[Math.floor(Math.random() * (i - 1)) + 1].getMultiaddrs())
  nets.push(net)
}
console.log('built', performance.eventLoopUtilization(elu0).utilization)
for (let s = 0; s < 8; s++) {
  const e = performance.eventLoopUtilization(); const c = process.cpuUsage()
  await new Promise(r => setTimeout(r, 2000))
  const conns = nets.reduce((a, n) => a + n.getConnections().length, 0)
  const streams = nets.reduce((a, n) => a + n.getConnections().reduce((b, c) => b + c.streams.length, 0), 0)
  const protos: Record<string, number> = {}
  for (const n of nets) for (const c of n.getConnections()) for (const st of c.streams) protos[st.protocol ?? '?'] = (protos[st.protocol ?? '?'] ?? 0) + 1
  const cu = process.cpuUsage(c)
  console.log(`t${s}: elu ${performance.eventLoopUtilization(e).utilization.toFixed(2)} cpu ${((cu.user + cu.system) / 2e6).toFixed(2)} conns ${conns} streams ${streams}`, JSON.stringify(protos))
}
await Promise.all(nets.map(n => n.stop()))
