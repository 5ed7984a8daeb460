/** Collects a peer's API event stream (WebSocket) so tests can wait on what arrived. */
import type { CliPeer } from './cli-peer.ts'

export interface ApiEvent {
  type: string
  [key: string]: unknown
}

export class EventLog {
  readonly events: ApiEvent[] = []
  private readonly ws: WebSocket

  private constructor (ws: WebSocket) {
    this.ws = ws
    ws.addEventListener('message', evt => { this.events.push(JSON.parse(String(evt.data))) })
  }

  static async open (peer: CliPeer): Promise<EventLog> {
    const ws = new WebSocket(`${peer.api.url.replace(/^http/, 'ws')}/api/v0/events?token=${encodeURIComponent(peer.api.token)}`)
    const log = new EventLog(ws)
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => { resolve() }, { once: true })
      ws.addEventListener('error', () => { reject(new Error('event stream refused')) }, { once: true })
    })
    return log
  }

  /** Gossip texts received on a topic. */
  gossip (topic: string): string[] {
    return this.events
      .filter(e => e.type === 'gossip:message' && e.topic === topic)
      .map(e => Buffer.from(e.data as string, 'base64').toString('utf8'))
  }

  close (): void {
    this.ws.close()
  }
}
