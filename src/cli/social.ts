/**
 * `peerverse` commands for the social feed: post, follow, read the timeline, profiles, mute and
 * block. Node-only (the CLI is a Node shell over the local API).
 */
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { client, out, parse, UsageError, type Commands } from './args.ts'
import { addTree } from './content.ts'

const HELP: Record<string, string> = {
  post: `Usage: peerverse post TEXT [--attach FILE ...] [--reply-to ENTRY_ID] [--data DIR] [--json]

Appends a signed post (or a reply) to your feed; followers get it live or when they reconnect.
--attach adds each file to the content store and names it by CID in the post.`,
  follow: `Usage: peerverse follow DID [--data DIR]
       peerverse unfollow DID [--data DIR]`,
  feed: `Usage: peerverse feed [--limit N] [--before CURSOR] [--data DIR] [--json]

Posts and replies of the people you follow and your own, newest first. Each page ends with a
cursor for --before.`,
  profile: `Usage: peerverse profile set [--name NAME] [--bio TEXT] [--avatar CID] [--data DIR]
       peerverse profile [DID] [--data DIR] [--json]   (your own without DID)`,
  mute: `Usage: peerverse mute|unmute|block|unblock DID [--data DIR]

mute hides an author from your timeline; block also drops their feed and stops replicating it.`
}

interface EntryView { id: string, author: string, seq: number, ts: number, kind: string, text?: string, name?: string, attachments?: string[], to?: string, likes?: number, cursor?: string }

async function cmdPost (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { attach: { type: 'string', multiple: true }, 'reply-to': { type: 'string' } })
  if (values.help === true) return out(HELP.post)
  if (positionals.length !== 1) throw new UsageError('post takes one TEXT (quote it)')
  const api = await client(values)
  const attachments: string[] = []
  for (const file of values.attach ?? []) {
    try { await stat(file) } catch { throw new UsageError(`${file} does not exist`) }
    attachments.push((await addTree(api, resolve(file), file.split('/').pop(), true)).cid)
  }
  const body = { text: positionals[0], ...(attachments.length > 0 ? { attachments } : {}) }
  const entry = values['reply-to'] != null
    ? await api.request<EntryView>('POST', '/api/v0/social/reply', { ...body, to: values['reply-to'] })
    : await api.request<EntryView>('POST', '/api/v0/social/post', body)
  if (values.json === true) return out(JSON.stringify(entry))
  out(`posted #${entry.seq} ${entry.id}`)
}

async function cmdFollow (args: string[], verb: 'follow' | 'unfollow' = 'follow'): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.follow)
  if (positionals.length !== 1) throw new UsageError(`${verb} takes one did`)
  await (await client(values)).request('POST', `/api/v0/social/${verb}`, { did: positionals[0] })
  out(`${verb === 'follow' ? 'following' : 'no longer following'} ${positionals[0]}`)
}

async function cmdFeed (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { limit: { type: 'string' }, before: { type: 'string' } })
  if (values.help === true) return out(HELP.feed)
  if (positionals.length !== 0) throw new UsageError('feed takes no arguments')
  const query = new URLSearchParams()
  if (values.limit != null) {
    if (!/^\d+$/.test(values.limit)) throw new UsageError('--limit must be a number')
    query.set('limit', values.limit)
  }
  if (values.before != null) query.set('before', values.before)
  const { entries } = await (await client(values)).request<{ entries: EntryView[] }>('GET', `/api/v0/social/feed?${query.toString()}`)
  if (values.json === true) return out(JSON.stringify(entries))
  if (entries.length === 0) out('  (nothing yet: follow someone with peerverse follow DID)')
  for (const e of entries) {
    const who = e.name ?? e.author.slice(0, 20) + '…'
    const extra = [e.kind === 'reply' ? `reply to ${e.to ?? ''}` : '', e.likes != null && e.likes > 0 ? `${e.likes} likes` : '', ...(e.attachments ?? []).map(a => `[${a}]`)].filter(x => x !== '').join('  ')
    out(`${new Date(e.ts).toISOString()}  ${who}: ${e.text ?? ''}${extra !== '' ? '  ' + extra : ''}`)
  }
  if (entries.length > 0) out(`(more: --before ${entries[entries.length - 1].cursor ?? ''})`)
}

async function cmdProfile (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { name: { type: 'string' }, bio: { type: 'string' }, avatar: { type: 'string' } })
  if (values.help === true) return out(HELP.profile)
  const api = await client(values)
  if (positionals[0] === 'set') {
    if (positionals.length !== 1) throw new UsageError('profile set takes only flags')
    if (values.name == null && values.bio == null && values.avatar == null) throw new UsageError('profile set needs --name, --bio or --avatar')
    const entry = await api.request<EntryView>('POST', '/api/v0/social/profile', { name: values.name, bio: values.bio, avatar: values.avatar })
    return out(values.json === true ? JSON.stringify(entry) : `profile updated (#${entry.seq})`)
  }
  if (positionals.length > 1) throw new UsageError('profile takes at most one did')
  const did = positionals[0] ?? (await api.request<{ did: string }>('GET', '/api/v0/status')).did
  const profile = await api.request<{ did: string, name?: string, bio?: string, avatar?: string, entries: number, forked: boolean }>('GET', `/api/v0/social/profile/${encodeURIComponent(did)}`)
  if (values.json === true) return out(JSON.stringify(profile))
  out(`did:      ${profile.did}`)
  out(`name:     ${profile.name ?? '(none)'}`)
  if (profile.bio != null) out(`bio:      ${profile.bio}`)
  if (profile.avatar != null) out(`avatar:   ${profile.avatar}`)
  out(`entries:  ${profile.entries}${profile.forked ? '  (FORKED: this author signed two different entries at one seq)' : ''}`)
}

function listCommand (verb: 'mute' | 'unmute' | 'block' | 'unblock') {
  return async (args: string[]): Promise<void> => {
    const { values, positionals } = parse(args, {})
    if (values.help === true) return out(HELP.mute)
    if (positionals.length !== 1) throw new UsageError(`${verb} takes one did`)
    await (await client(values)).request('POST', `/api/v0/social/${verb}`, { did: positionals[0] })
    const done = { mute: 'muted', unmute: 'unmuted', block: 'blocked', unblock: 'unblocked' }[verb]
    out(`${done} ${positionals[0]}`)
  }
}

export const socialCommands: Commands = {
  post: { run: cmdPost, summary: 'post to your feed (optionally with attachments)' },
  follow: { run: async args => { await cmdFollow(args, 'follow') }, summary: 'follow a did / unfollow: stop following' },
  unfollow: { run: async args => { await cmdFollow(args, 'unfollow') } },
  feed: { run: cmdFeed, summary: 'the timeline of who you follow, newest first' },
  profile: { run: cmdProfile, summary: "set your profile, or show someone's" },
  mute: { run: listCommand('mute'), summary: 'hide someone from your timeline / block: stop replicating them too' },
  unmute: { run: listCommand('unmute') },
  block: { run: listCommand('block') },
  unblock: { run: listCommand('unblock') }
}
