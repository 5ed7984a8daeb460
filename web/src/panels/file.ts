// A shared file: a content link opened here is fetched from the peers it names and offered.
import type { Api } from '../api.ts'
import { $ } from '../dom.ts'
import { formatLink, shortId, type Link } from '../links.ts'
import type { Report } from '../panel.ts'

export interface FileContext {
  api: Pick<Api, 'postLines' | 'token'>
  report: Report
}

export interface FilePanel {
  /** Fetches the content a link names (through the peers it carries) and offers it. */
  open: (link: Link) => Promise<void>
}

/** A line of the peer's fetch answer: progress, the last line (done, with the content's stat) or an error. */
interface FetchLine {
  progress?: { bytes?: number, total?: number, peers?: number }
  done?: boolean
  kind?: 'file' | 'directory'
  size?: number
  error?: string
  message?: string
}

export function mountFile (ctx: FileContext): FilePanel {
  const { api, report } = ctx
  let current: string | null = null

  function state (text: string, s: string): void {
    const el = $('file-state')
    el.textContent = text
    el.dataset.state = s
  }

  async function open (link: Link): Promise<void> {
    if (link.kind !== 'content') return
    const cid = link.target
    current = cid
    $('sec-file').hidden = false
    $('file-cid').textContent = shortId(cid)
    $('file-cid').title = cid
    $('file-open').hidden = true
    $('file-save').hidden = true
    state(`fetching from ${link.peers.length} peer${link.peers.length === 1 ? '' : 's'} and the swarm…`, 'fetching')
    let last: FetchLine | undefined
    try {
      last = await api.postLines<FetchLine>('/api/v0/content/fetch', { link: formatLink(link) }, line => {
        if (current !== cid || line.progress == null) return
        const { bytes, total, peers } = line.progress
        if (bytes != null) state(`fetching… ${bytes}${total != null && total > 0 ? ` of ${total}` : ''} bytes${peers != null ? ` from ${peers} peer${peers === 1 ? '' : 's'}` : ''}`, 'fetching')
      })
    } catch (err) {
      if (current === cid) state('failed', 'failed')
      report.showError('file', err)
      return
    }
    if (current !== cid) return
    if (last?.done !== true) {
      const err = Object.assign(new Error(last?.message ?? 'the fetch ended without an answer'), { name: last?.error ?? 'FetchError' })
      state(`${err.name}: ${err.message}`, 'failed')
      report.showError('file', err)
      return
    }
    // Links by URL cannot send a header: /content/ takes the token in the query (this tab's own).
    const url = `/content/${encodeURIComponent(cid)}?token=${encodeURIComponent(api.token)}`
    const openA = $<HTMLAnchorElement>('file-open')
    const saveA = $<HTMLAnchorElement>('file-save')
    openA.href = url
    saveA.href = url
    saveA.download = cid
    openA.hidden = false
    saveA.hidden = last.kind === 'directory'
    state(`${last.kind ?? 'file'}, ${last.size ?? 0} bytes, here`, 'done')
  }

  return { open }
}
