/**
 * `peerverse space ...`: create, join and leave shared 3D spaces, chat, list who is there, place
 * and remove objects, and set the owner's policy. Node-only (the CLI is a Node shell over the
 * local API).
 */
import { looksLikeLink } from '../net/links.ts'
import { client, out, parse, UsageError, wholeNumber, type Commands } from './args.ts'

const HELP: Record<string, string> = {
  space: `Usage: peerverse space create NAME [--private] [--width M] [--depth M] [--cell M] [--name DISPLAY] [--data DIR] [--json]
       peerverse space join ID|LINK [--name DISPLAY] [--avatar CID]
       peerverse space link ID [--json]
       peerverse space leave ID
       peerverse space list
       peerverse space say ID TEXT
       peerverse space who ID
       peerverse space chat ID [--limit N]
       peerverse space objects ID
       peerverse space place ID --model CID --at X,Y,Z [--object OBJECT_ID]
       peerverse space remove ID OBJECT_ID
       peerverse space policy ID [--editor DID ...] [--no-editor DID ...] [--ban DID ...] [--unban DID ...]
                                 [--mute DID ...] [--unmute DID ...] [--kick DID ...]
                                 [--member DID ...] [--no-member DID ...]
       peerverse space publish ID [--description TEXT] [--tags a,b] [--thumbnail CID]
       peerverse space unpublish ID
       peerverse space explore [--json]

A space is a shared 3D place with no server: its id is the CID of its signed descriptor, and the
peers in it keep its chat and objects. The running peer stays in the spaces it joined (across
restarts) until 'space leave'. A private space encrypts everything end to end to its members;
its owner adds them with --member (and removing one with --no-member rotates the key).
The owner's policy names editors, and bans, mutes and kicks (every honest peer enforces it).
'space link' prints the space's link: its code (pv:space=ID&peer=...) and the browser client's
URL; both carry addresses of this peer and a few other members, so 'space join LINK' on a peer
that knows no one asks them first (any link form works, and a bare ID asks the DHT).
'space publish' lists one of your public spaces in the directory (peers learn it over gossip and
the DHT, with no centre) until 'space unpublish'; 'space explore' shows the live spaces listed,
most members present first, each with the link that opens it.`
}

/** A refusal over a space's rate limit, saying what was not sent; other errors as they are. */
function notSent (err: unknown, what: string): unknown {
  const e = err as { code?: string, message?: string }
  if (e?.code !== 'SpaceRateLimitError') return err
  return new Error(`not sent: ${what}: ${String(e.message).replace(/^not sent: /, '')}`)
}

interface SpaceInfo { id: string, name: string, owner: string, private: boolean, members: number, objects: number, grid: { width: number, depth: number, cell: number } }

async function cmdSpace (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    private: { type: 'boolean' },
    width: { type: 'string' },
    depth: { type: 'string' },
    cell: { type: 'string' },
    name: { type: 'string' },
    avatar: { type: 'string' },
    limit: { type: 'string' },
    model: { type: 'string' },
    at: { type: 'string' },
    object: { type: 'string' },
    editor: { type: 'string', multiple: true },
    'no-editor': { type: 'string', multiple: true },
    ban: { type: 'string', multiple: true },
    unban: { type: 'string', multiple: true },
    mute: { type: 'string', multiple: true },
    unmute: { type: 'string', multiple: true },
    kick: { type: 'string', multiple: true },
    member: { type: 'string', multiple: true },
    'no-member': { type: 'string', multiple: true },
    description: { type: 'string' },
    tags: { type: 'string' },
    thumbnail: { type: 'string' }
  })
  if (values.help === true || positionals.length === 0) return out(HELP.space)
  const [verb, id, ...rest] = positionals
  const api = await client(values)
  const json = values.json === true
  const show = (s: SpaceInfo): void => {
    if (json) return out(JSON.stringify(s))
    out(`${s.id}\n  ${s.name}${s.private ? ' (private)' : ''}, ${s.grid.width}x${s.grid.depth} m, owner ${s.owner}\n  ${s.members} here, ${s.objects} objects`)
  }
  const needId = (): string => {
    if (id == null) throw new UsageError(`space ${verb} needs a space id`)
    return id
  }
  const n = (v: string | undefined, name: string): number | undefined => v == null ? undefined : Number(wholeNumber(v, name))
  switch (verb) {
    case 'create': {
      if (id == null) throw new UsageError('space create needs a NAME')
      return show(await api.request<SpaceInfo>('POST', '/api/v0/space/create', { name: [id, ...rest].join(' '), private: values.private === true, width: n(values.width, '--width'), depth: n(values.depth, '--depth'), cell: n(values.cell, '--cell'), displayName: values.name }))
    }
    case 'join': {
      const target = needId()
      // A link is pv:..., a URL with #space=... or a bare space=...; anything else is an id.
      const which = looksLikeLink(target) ? { link: target } : { space: target }
      return show(await api.request<SpaceInfo>('POST', '/api/v0/space/join', { ...which, name: values.name, avatar: values.avatar }))
    }
    case 'link': {
      const link = await api.request<{ code: string, link: string }>('GET', `/api/v0/space/link?id=${encodeURIComponent(needId())}`)
      return out(json ? JSON.stringify(link) : `${link.code}\n${link.link}`)
    }
    case 'leave': await api.request('POST', '/api/v0/space/leave', { space: needId() }); return out(`left ${id ?? ''}`)
    case 'list': {
      const { spaces } = await api.request<{ spaces: SpaceInfo[] }>('GET', '/api/v0/space')
      if (json) return out(JSON.stringify(spaces))
      if (spaces.length === 0) out('  (none)')
      for (const s of spaces) out(`${s.id}  ${s.name}${s.private ? ' (private)' : ''}  ${s.members} here`)
      return
    }
    case 'say': {
      if (rest.length === 0) throw new UsageError('space say needs ID and TEXT')
      const text = rest.join(' ')
      const c = await api.request<{ id: string }>('POST', '/api/v0/space/say', { space: needId(), text }).catch(err => { throw notSent(err, JSON.stringify(text)) })
      return out(json ? JSON.stringify(c) : c.id)
    }
    case 'who': {
      const { members } = await api.request<{ members: Array<{ did: string, name: string, position: number[], near: boolean }> }>('GET', `/api/v0/space/${encodeURIComponent(needId())}/who`)
      if (json) return out(JSON.stringify(members))
      for (const m of members) out(`${m.did}  ${m.name === '' ? '-' : m.name}  at ${m.position.map(x => x.toFixed(1)).join(',')}${m.near ? '  near' : ''}`)
      return
    }
    case 'chat': {
      const q = values.limit == null ? '' : `?limit=${wholeNumber(values.limit, '--limit')}`
      const { chat } = await api.request<{ chat: Array<{ author: string, text: string, ts: number }> }>('GET', `/api/v0/space/${encodeURIComponent(needId())}/chat${q}`)
      if (json) return out(JSON.stringify(chat))
      for (const c of chat) out(`${new Date(c.ts).toISOString()}  ${c.author.slice(0, 16)}…  ${c.text}`)
      return
    }
    case 'objects': {
      const { objects } = await api.request<{ objects: Array<{ id: string, model: string, position: number[] }> }>('GET', `/api/v0/space/${encodeURIComponent(needId())}/objects`)
      if (json) return out(JSON.stringify(objects))
      if (objects.length === 0) out('  (none)')
      for (const o of objects) out(`${o.id}  ${o.model}  at ${o.position.join(',')}`)
      return
    }
    case 'place': {
      if (values.model == null || values.at == null) throw new UsageError('space place needs --model CID and --at X,Y,Z')
      const at = values.at.split(',').map(Number)
      if (at.length !== 3 || !at.every(Number.isFinite)) throw new UsageError('--at must be X,Y,Z')
      const r = await api.request<{ id: string }>('POST', '/api/v0/space/object/place', { space: needId(), model: values.model, position: at, id: values.object })
        .catch(err => { throw notSent(err, `the object ${values.model} at ${at.join(',')}`) })
      return out(r.id)
    }
    case 'remove': {
      if (rest.length !== 1) throw new UsageError('space remove needs ID and OBJECT_ID')
      await api.request('POST', '/api/v0/space/object/remove', { space: needId(), id: rest[0] })
      return out(`removed ${rest[0]}`)
    }
    case 'policy': {
      const p = await api.request<Record<string, unknown>>('POST', '/api/v0/space/policy', {
        space: needId(),
        addEditors: values.editor,
        removeEditors: values['no-editor'],
        ban: values.ban,
        unban: values.unban,
        mute: values.mute,
        unmute: values.unmute,
        kick: values.kick,
        addMembers: values.member,
        removeMembers: values['no-member']
      })
      return out(JSON.stringify(p, null, json ? undefined : 2))
    }
  }
  const listed = await directoryCommand(api, verb, id, values, json)
  if (listed) return
  throw new UsageError(`unknown space command ${JSON.stringify(verb)} (see peerverse space --help)`)
}

interface ListingInfo { space: string, name: string, description: string, tags: string[], thumbnail: string, owner: string, present: number, updatedAt: number, link: string }

/** The directory's verbs (publish, unpublish, explore); false for any other verb. */
async function directoryCommand (api: Awaited<ReturnType<typeof client>>, verb: string, id: string | undefined, values: { description?: string, tags?: string, thumbnail?: string }, json: boolean): Promise<boolean> {
  switch (verb) {
    case 'publish': {
      if (id == null) throw new UsageError('space publish needs a space id')
      const tags = values.tags == null ? undefined : values.tags.split(',').map(t => t.trim()).filter(t => t !== '')
      const l = await api.request<ListingInfo>('POST', '/api/v0/directory/publish', { space: id, description: values.description, tags, thumbnail: values.thumbnail })
      out(json ? JSON.stringify(l) : `listed ${l.space} (${l.name}), ${l.present} here\n  ${l.link}`)
      return true
    }
    case 'unpublish': {
      if (id == null) throw new UsageError('space unpublish needs a space id')
      await api.request('POST', '/api/v0/directory/unpublish', { space: id })
      out(`unlisted ${id}`)
      return true
    }
    case 'explore': {
      const { listings } = await api.request<{ listings: ListingInfo[] }>('GET', '/api/v0/directory')
      if (json) { out(JSON.stringify(listings)); return true }
      if (listings.length === 0) out('  (no live spaces listed yet)')
      for (const l of listings) {
        out(`${l.name}  ${l.present} here${l.tags.length > 0 ? '  [' + l.tags.join(', ') + ']' : ''}  owner ${l.owner}`)
        if (l.description !== '') out(`  ${l.description}`)
        out(`  ${l.link}`)
      }
      return true
    }
  }
  return false
}

export const spaceCommands: Commands = {
  space: { run: cmdSpace, summary: "create, join (by id or link), link and leave spaces; say, who, chat, objects, and the owner's policy" }
}
