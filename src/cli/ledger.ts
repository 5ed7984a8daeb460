/**
 * `peerverse` commands for the ledger: balances, payments, assets, parcels, a space's land (its
 * owner's grants and price), transaction status, the devnet faucet and the chain. Commands that submit a transaction wait until it is final
 * unless --no-wait. Node-only (the CLI is a Node shell over the local API).
 */
import type { ApiClient } from '../api/client.ts'
import { client, out, parse, UsageError, wholeNumber, type Commands } from './args.ts'

const HELP: Record<string, string> = {
  balance: `Usage: peerverse balance [ADDRESS] [--data DIR] [--json]

Amounts are whole numbers of the smallest unit.`,
  pay: `Usage: peerverse pay ADDRESS AMOUNT [--fee N] [--no-wait] [--data DIR] [--json]

Signs a transfer with your key and waits until it is final (or rejected, with the reason).`,
  asset: `Usage: peerverse asset mint --content CID --name NAME [--no-wait] [--data DIR]
       peerverse asset transfer ASSET_ID ADDRESS [--no-wait] [--data DIR]`,
  assets: `Usage: peerverse assets [ADDRESS] [--data DIR] [--json]`,
  parcel: `Usage: peerverse parcel claim --space SPACE --x X --y Y --w W --h H [--max-price N] [--no-wait] [--data DIR]
       peerverse parcel transfer PARCEL_ID ADDRESS [--no-wait] [--data DIR]
       peerverse parcels [ADDRESS] [--data DIR] [--json]

A claim in your own space is free but for the fee; in another's it needs the owner's grant
(peerverse land grant) or pays the owner's price per cell: at most --max-price, by default the
price your peer sees now, so a price raised before the claim is final refuses it. The first land transaction of a
space carries its signed record, which your peer attaches for a space it is in.`,
  land: `Usage: peerverse land SPACE [--data DIR] [--json]                  the space's owner, price, grants and parcels
       peerverse land grant --space SPACE --to ADDRESS --x X --y Y --w W --h H [--no-wait] [--data DIR]
       peerverse land revoke GRANT_ID [--no-wait] [--data DIR]
       peerverse land price --space SPACE --price N [--no-wait] [--data DIR]

Only a space's owner grants land in it (ADDRESS may then claim inside the rectangle) or sets a
price per cell at which anyone may claim, paid to the owner (--price 0 ends the sale).`,
  tx: `Usage: peerverse tx TXID [--data DIR] [--json]`,
  faucet: `Usage: peerverse faucet [ADDRESS] [--no-wait] [--data DIR]   (devnets only)`,
  chain: `Usage: peerverse chain [--data DIR] [--json]`
}

/** What `chain` and `status` show of GET /api/v0/ledger/status. */
export interface LedgerStatusView { chain: string, height: number, halted?: { error: string, code?: string, message: string, since: number } | null }

/** One line: committing, or halted because the ledger cannot write (and since when). */
export function ledgerState (s: LedgerStatusView): string {
  const h = s.halted
  if (h == null) return 'committing'
  return `HALTED: cannot write to the store${h.code != null ? ` (${h.code})` : ''} since ${new Date(h.since).toISOString()}: ${h.message}; resumes by itself once it can write (free some disk space)`
}

interface TxView { id: string, status: string, height?: number, error?: string, message?: string, receipt?: { created?: string } }

/** Waits until a transaction is final or rejected (or the deadline passes), printing its status. */
async function finish (api: ApiClient, tx: { id: string }, values: { json?: boolean, 'no-wait'?: boolean }, what: string): Promise<void> {
  let status: TxView = { id: tx.id, status: 'pending' }
  if (values['no-wait'] !== true) {
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      status = await api.request<TxView>('GET', `/api/v0/ledger/tx/${tx.id}`)
      if (status.status === 'committed' || status.status === 'rejected') break
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
  if (values.json === true) return out(JSON.stringify(status))
  if (status.status === 'committed') out(`${what}: final at height ${status.height ?? '?'} (tx ${tx.id})${status.receipt?.created != null ? `; id ${status.receipt.created}` : ''}`)
  else if (status.status === 'rejected') throw new Error(`${what} rejected: ${status.error ?? ''}: ${status.message ?? ''} (tx ${tx.id})`)
  else out(`${what}: pending (tx ${tx.id})`)
}

const TX_FLAGS = { fee: { type: 'string' }, 'no-wait': { type: 'boolean' } } as const

async function cmdBalance (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.balance)
  if (positionals.length > 1) throw new UsageError('balance takes at most one address')
  const b = await (await client(values)).request<{ address: string, balance: string, stake: string, nonce: number, height: number }>('GET', `/api/v0/ledger/balance/${encodeURIComponent(positionals[0] ?? '')}`)
  if (values.json === true) return out(JSON.stringify(b))
  out(`${b.balance}${b.stake !== '0' ? ` (+ ${b.stake} staked)` : ''}  at height ${b.height}  ${b.address}`)
}

async function cmdPay (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, TX_FLAGS)
  if (values.help === true) return out(HELP.pay)
  if (positionals.length !== 2) throw new UsageError('pay takes ADDRESS AMOUNT')
  const api = await client(values)
  const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/pay', { to: positionals[0], amount: wholeNumber(positionals[1], 'AMOUNT'), fee: values.fee == null ? undefined : wholeNumber(values.fee, '--fee') })
  await finish(api, tx, values, `paid ${positionals[1]} to ${positionals[0]}`)
}

async function cmdAsset (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...TX_FLAGS, content: { type: 'string' }, name: { type: 'string' } })
  if (values.help === true) return out(HELP.asset)
  const api = await client(values)
  if (positionals[0] === 'mint' && positionals.length === 1) {
    if (values.content == null || values.name == null) throw new UsageError('asset mint needs --content CID and --name NAME')
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/asset/mint', { content: values.content, name: values.name })
    return await finish(api, tx, values, `minted ${values.name}`)
  }
  if (positionals[0] === 'transfer' && positionals.length === 3) {
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/asset/transfer', { asset: positionals[1], to: positionals[2] })
    return await finish(api, tx, values, `transferred ${positionals[1]}`)
  }
  throw new UsageError('usage: peerverse asset mint --content CID --name NAME | asset transfer ASSET_ID ADDRESS')
}

async function cmdAssets (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.assets)
  const { assets } = await (await client(values)).request<{ assets: Array<{ id: string, name: string, content: string }> }>('GET', `/api/v0/ledger/assets/${encodeURIComponent(positionals[0] ?? '')}`)
  if (values.json === true) return out(JSON.stringify(assets))
  if (assets.length === 0) out('  (none)')
  for (const a of assets) out(`${a.id}  ${a.name}  content ${a.content}`)
}

async function cmdParcel (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...TX_FLAGS, space: { type: 'string' }, 'max-price': { type: 'string' }, x: { type: 'string' }, y: { type: 'string' }, w: { type: 'string' }, h: { type: 'string' } })
  if (values.help === true) return out(HELP.parcel)
  const api = await client(values)
  if (positionals[0] === 'claim' && positionals.length === 1) {
    if (values.space == null || values.x == null || values.y == null || values.w == null || values.h == null) throw new UsageError('parcel claim needs --space --x --y --w --h')
    const n = (v: string, name: string): number => Number(wholeNumber(v, name))
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/parcel/claim', { space: values.space, x: n(values.x, '--x'), y: n(values.y, '--y'), w: n(values.w, '--w'), h: n(values.h, '--h'), maxPrice: values['max-price'] == null ? undefined : wholeNumber(values['max-price'], '--max-price') })
    return await finish(api, tx, values, `claimed ${values.w}x${values.h} at ${values.x},${values.y} in ${values.space}`)
  }
  if (positionals[0] === 'transfer' && positionals.length === 3) {
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/parcel/transfer', { parcel: positionals[1], to: positionals[2] })
    return await finish(api, tx, values, `transferred parcel ${positionals[1]}`)
  }
  throw new UsageError('usage: peerverse parcel claim --space S --x X --y Y --w W --h H | parcel transfer PARCEL_ID ADDRESS')
}

async function cmdParcels (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.parcel)
  const { parcels } = await (await client(values)).request<{ parcels: Array<{ id: string, space: string, x: number, y: number, w: number, h: number }> }>('GET', `/api/v0/ledger/parcels/${encodeURIComponent(positionals[0] ?? '')}`)
  if (values.json === true) return out(JSON.stringify(parcels))
  if (parcels.length === 0) out('  (none)')
  for (const p of parcels) out(`${p.id}  ${p.space}  ${p.w}x${p.h} at ${p.x},${p.y}`)
}

interface LandView { space: string, known: boolean, owner?: string, width?: number, depth?: number, price?: string, grants: Array<{ id: string, grantee: string, x: number, y: number, w: number, h: number }>, parcels: Array<{ id: string, owner: string, x: number, y: number, w: number, h: number }> }

async function cmdLand (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...TX_FLAGS, space: { type: 'string' }, to: { type: 'string' }, price: { type: 'string' }, x: { type: 'string' }, y: { type: 'string' }, w: { type: 'string' }, h: { type: 'string' } })
  if (values.help === true) return out(HELP.land)
  const api = await client(values)
  const n = (v: string | undefined, name: string): number => {
    if (v == null) throw new UsageError(`land grant needs ${name}`)
    return Number(wholeNumber(v, name))
  }
  if (positionals[0] === 'grant' && positionals.length === 1) {
    if (values.space == null || values.to == null) throw new UsageError('land grant needs --space SPACE --to ADDRESS --x --y --w --h')
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/land/grant', { space: values.space, to: values.to, x: n(values.x, '--x'), y: n(values.y, '--y'), w: n(values.w, '--w'), h: n(values.h, '--h'), fee: values.fee == null ? undefined : wholeNumber(values.fee, '--fee') })
    return await finish(api, tx, values, `granted ${values.w ?? ''}x${values.h ?? ''} at ${values.x ?? ''},${values.y ?? ''} in ${values.space} to ${values.to}`)
  }
  if (positionals[0] === 'revoke' && positionals.length === 2) {
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/land/revoke', { grant: positionals[1] })
    return await finish(api, tx, values, `revoked grant ${positionals[1]}`)
  }
  if (positionals[0] === 'price' && positionals.length === 1) {
    if (values.space == null || values.price == null) throw new UsageError('land price needs --space SPACE --price N')
    const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/land/price', { space: values.space, price: wholeNumber(values.price, '--price') })
    return await finish(api, tx, values, `price of land in ${values.space} set to ${values.price} a cell`)
  }
  if (positionals.length === 1 && !['grant', 'revoke', 'price'].includes(positionals[0])) {
    const land = await api.request<LandView>('GET', `/api/v0/ledger/land/${encodeURIComponent(positionals[0])}`)
    if (values.json === true) return out(JSON.stringify(land))
    if (!land.known) return out(`space ${land.space}: not known to the ledger yet (its first land transaction proves it)`)
    out(`space:   ${land.space} (${land.width ?? '?'}x${land.depth ?? '?'})`)
    out(`owner:   ${land.owner ?? '?'}`)
    out(`price:   ${land.price === '0' ? 'not for sale' : `${land.price ?? '?'} a cell`}`)
    out('grants:')
    if (land.grants.length === 0) out('  (none)')
    for (const g of land.grants) out(`  ${g.id}  ${g.grantee}  ${g.w}x${g.h} at ${g.x},${g.y}`)
    out('parcels:')
    if (land.parcels.length === 0) out('  (none)')
    for (const p of land.parcels) out(`  ${p.id}  ${p.owner}  ${p.w}x${p.h} at ${p.x},${p.y}`)
    return
  }
  throw new UsageError('usage: peerverse land SPACE | land grant --space S --to ADDRESS --x X --y Y --w W --h H | land revoke GRANT_ID | land price --space S --price N')
}

async function cmdTx (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {})
  if (values.help === true) return out(HELP.tx)
  if (positionals.length !== 1) throw new UsageError('tx takes one transaction id')
  const status = await (await client(values)).request<TxView>('GET', `/api/v0/ledger/tx/${encodeURIComponent(positionals[0])}`)
  if (values.json === true) return out(JSON.stringify(status))
  if (status.status === 'committed') out(`committed at height ${status.height ?? '?'}`)
  else if (status.status === 'rejected') out(`rejected: ${status.error ?? ''}: ${status.message ?? ''}`)
  else out(status.status)
}

async function cmdFaucet (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, TX_FLAGS)
  if (values.help === true) return out(HELP.faucet)
  const api = await client(values)
  const tx = await api.request<{ id: string }>('POST', '/api/v0/ledger/faucet', positionals[0] != null ? { to: positionals[0] } : {})
  await finish(api, tx, values, 'faucet')
}

async function cmdChain (args: string[]): Promise<void> {
  const { values } = parse(args, {})
  if (values.help === true) return out(HELP.chain)
  const s = await (await client(values)).request<LedgerStatusView & { validators: Array<{ id: string, power: number }>, validator: boolean, mempool: number }>('GET', '/api/v0/ledger/status')
  if (values.json === true) return out(JSON.stringify(s))
  out(`chain:      ${s.chain}`)
  out(`height:     ${s.height}`)
  out(`state:      ${ledgerState(s)}`)
  out(`validator:  ${s.validator ? 'yes' : 'no'}`)
  out(`mempool:    ${s.mempool}`)
  out('validators:')
  for (const v of s.validators) out(`  ${v.id}  power ${v.power}`)
}

export const ledgerCommands: Commands = {
  balance: { run: cmdBalance, summary: 'a balance on the ledger (yours by default)' },
  pay: { run: cmdPay, summary: 'send money to a did' },
  asset: { run: cmdAsset, summary: 'mint an asset pointing at content, or transfer one' },
  assets: { run: cmdAssets, summary: 'assets owned (yours by default)' },
  parcel: { run: cmdParcel, summary: "claim a land parcel in a space's grid, or transfer one; parcels: list them" },
  parcels: { run: cmdParcels },
  land: { run: cmdLand, summary: "a space's land: its owner grants it, or sets a price per cell paid to the owner" },
  tx: { run: cmdTx, summary: "a transaction's status: pending, committed at a height, or rejected with a reason" },
  faucet: { run: cmdFaucet, summary: 'on a devnet: get funds from the faucet' },
  chain: { run: cmdChain, summary: 'the chain: id, height, validators' }
}
