/**
 * Node-only. Runs inside a testbed namespace: listens on a unix socket (namespaces share the
 * filesystem) and connects each connection to HOST:PORT in its namespace, so a process outside
 * can reach a peer's API that listens on 127.0.0.1 there. Prints `ready` once listening.
 *   forward.ts SOCKET HOST PORT
 */
import net from 'node:net'

const [socketPath, host, port] = process.argv.slice(2)
const server = net.createServer(client => {
  const upstream = net.connect({ host, port: Number(port) })
  client.on('error', () => { upstream.destroy() })
  upstream.on('error', () => { client.destroy() })
  client.pipe(upstream)
  upstream.pipe(client)
})
server.listen(socketPath, () => { process.stdout.write('ready\n') })
process.on('SIGTERM', () => { server.close(); process.exit(0) })
