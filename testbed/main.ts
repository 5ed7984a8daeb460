/**
 * Node-only. `npm run testbed -- SCENARIO`: builds a testbed scenario with real `peerverse start`
 * peers in it, prints what it built and waits until Ctrl-C, then tears everything down.
 * `npm run testbed -- clean` removes what runs that died left behind. Needs root.
 */
import { join } from 'node:path'
import { Testbed, cleanStaleTestbeds, testbedUnavailable, type TbHost, type TestbedSpec } from './testbed.ts'
import { startNsPeer, type NsPeer } from './peer.ts'

/** The upload cap of the `capped` scenario's seeders. */
export const CAPPED_SEEDER_BYTES_PER_SECOND = 8 * 1024 * 1024

interface Scenario {
  about: string
  spec: TestbedSpec
  /** Starts the peers: the internet's first host runs the first peer (a devnet) and every other follows its chain. */
  peers: (tb: Testbed) => Array<{ host: TbHost, role: string, args: string[] }>
}

const homesScenario = (about: string, second: 'cone' | 'symmetric'): Scenario => ({
  about,
  spec: { publicHosts: 2, homes: [{ name: 'home1', nat: 'cone', hosts: 1 }, { name: 'home2', nat: second, hosts: 1 }] },
  peers: tb => [
    { host: tb.internet[0], role: 'bootstrap', args: ['--dht-mode', 'server'] },
    { host: tb.internet[1], role: 'relay', args: ['--dht-mode', 'server'] },
    ...tb.homes.map(h => ({ host: h.hosts[0], role: `peer behind ${h.nat} NAT`, args: [] }))
  ]
})

export const SCENARIOS: Record<string, Scenario> = {
  'two-homes': homesScenario('a bootstrap and a relay on the internet, two homes behind cone NATs with one peer each', 'cone'),
  symmetric: homesScenario('a bootstrap and a relay on the internet, one home behind a cone NAT, one behind a symmetric NAT', 'symmetric'),
  capped: {
    about: `four public seeders with uplinks capped at ${CAPPED_SEEDER_BYTES_PER_SECOND / 1024 / 1024} MiB/s, one uncapped downloader`,
    spec: { publicHosts: 5, homes: [] },
    peers: tb => [
      ...tb.internet.slice(0, 4).map((host, i) => ({ host, role: `seeder ${i + 1} (capped)`, args: ['--dht-mode', 'server'] })),
      { host: tb.internet[4], role: 'downloader', args: ['--dht-mode', 'server'] }
    ]
  }
}

function usage (): string {
  return `Usage: npm run testbed -- SCENARIO | clean\n\nScenarios:\n${Object.entries(SCENARIOS).map(([n, s]) => `  ${n.padEnd(10)} ${s.about}`).join('\n')}\n  clean      remove testbeds left by runs that died\n`
}

async function main (): Promise<void> {
  const name = process.argv[2]
  if (name === 'clean') {
    const removed = await cleanStaleTestbeds()
    console.log(removed.length === 0 ? 'no stale testbed' : `removed ${removed.join(' ')}`)
    return
  }
  const scenario = SCENARIOS[name ?? '']
  if (scenario == null) { process.stderr.write(usage()); process.exitCode = 2; return }
  const reason = await testbedUnavailable()
  if (reason != null) { console.error(reason); process.exitCode = 1; return }
  const tb = await Testbed.create(scenario.spec)
  const peers: Array<{ role: string, peer: NsPeer }> = []
  try {
    if (name === 'capped') for (const h of tb.internet.slice(0, 4)) await h.capEgress(CAPPED_SEEDER_BYTES_PER_SECOND)
    let first: NsPeer | undefined
    for (const { host, role, args } of scenario.peers(tb)) {
      const chain = first == null ? ['--devnet'] : ['--genesis', join(first.dataDir, 'genesis.json'), '--bootstrap', first.addr]
      const peer = await startNsPeer(host, [...args, ...chain])
      first ??= peer
      peers.push({ role, peer })
    }
  } catch (err) {
    await tb.destroy()
    throw err
  }
  console.log(`testbed ${tb.prefix}: ${scenario.about}\n`)
  console.log('namespaces:')
  for (const h of tb.internet) console.log(`  ${h.ns.padEnd(16)} internet host  ${h.ip}`)
  for (const home of tb.homes) {
    console.log(`  ${home.router.ns.padEnd(16)} ${home.name} router (${home.nat} NAT)  WAN ${home.router.ip}`)
    for (const h of home.hosts) console.log(`  ${h.ns.padEnd(16)} ${home.name} host  ${h.ip}`)
  }
  console.log('\npeers:')
  for (const { role, peer } of peers) {
    console.log(`  ${role}: ${peer.ready.peerId}\n    ${peer.addr}\n    API on this host 127.0.0.1:${peer.apiPort}  (peerverse status --data ${peer.dataDir})`)
  }
  console.log('\nCtrl-C tears it all down.')
  const keepAlive = setInterval(() => {}, 1 << 30)
  await new Promise<void>(resolve => { process.once('SIGINT', resolve); process.once('SIGTERM', resolve) })
  clearInterval(keepAlive)
  await tb.destroy()
}

await main()
