/**
 * `peerverse voice`: what voice is doing in the spaces we are in (listening, sending, whom we
 * hear, who is talking, frames dropped by reason, the settings). Node-only (the CLI is a Node
 * shell over the local API).
 */
import { client, out, parse, UsageError, type Commands } from './args.ts'
import type { VoiceState } from '../voice/index.ts'

const HELP = `Usage: peerverse voice [--space ID] [--data DIR] [--json]

What voice is doing in one space (--space) or every space you are in: whether the peer listens
and sends, whom it hears (the nearest talking members in range, at most the bound), who is
talking, and the frames it dropped, by reason.`

/** The lines of one space's voice state. */
export function voiceLines (space: string, s: VoiceState): string[] {
  const dropped = Object.entries(s.dropped).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`)
  return [
    `${space}: ${s.listening ? 'listening' : 'not listening'}, ${s.sending ? 'sending' : 'not sending'} (hears at most ${s.settings.maxHeard} within ${s.settings.rangeM} m)`,
    `  heard: ${s.heard.length === 0 ? 'nobody' : s.heard.join(', ')}`,
    ...s.speakers.map(p => `  ${p.did} ${p.talking ? 'talking' : 'quiet'}${p.receiving ? ', receiving' : ''} level ${p.level}`),
    `  dropped: ${dropped.length === 0 ? 'none' : dropped.join(', ')}`
  ]
}

async function cmdVoice (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { space: { type: 'string' } })
  if (values.help === true) return out(HELP)
  if (positionals.length !== 0) throw new UsageError('voice takes no arguments (use --space ID)')
  const api = await client(values)
  const spaces = values.space != null ? [values.space] : (await api.request<{ spaces: Array<{ id: string }> }>('GET', '/api/v0/space')).spaces.map(s => s.id)
  const states: Record<string, VoiceState> = {}
  for (const id of spaces) states[id] = await api.request<VoiceState>('GET', `/api/v0/voice?space=${encodeURIComponent(id)}`)
  if (values.json === true) return out(JSON.stringify(states))
  if (spaces.length === 0) return out('not in any space')
  for (const [id, s] of Object.entries(states)) for (const line of voiceLines(id, s)) out(line)
}

export const voiceCommands: Commands = {
  voice: { run: cmdVoice, summary: 'what voice is doing in your spaces: whom you hear, who talks, what was dropped' }
}
