/**
 * Node-only: the API's routes for the ledger: chain status, balances, assets, parcels,
 * transactions, proofs, blocks, evidence, the genesis and the validator set of a height (what a light client checks proofs with); paying, minting, claiming, staking, the faucet and
 * submitting signed transactions (one or a batch); a space's land (owner, price, grants), and the
 * owner's grants and price.
 *
 * A land transaction in a space the ledger does not know yet carries the space's signed record
 * (src/ledger/land.ts): the body's `record` (base64), else the descriptor of a space this peer is
 * in. With neither, the request is refused here (404 UnknownSpaceError) rather than costing a fee.
 */
import { parseCid } from '../../content/index.ts'
import { genesisJson } from '../../ledger/index.ts'
import type { Tx } from '../../ledger/tx.ts'
import { ApiError } from '../errors.ts'
import { intParam, str, type Route, type RouteContext } from '../routes.ts'

/** Signed transactions in one POST /api/v0/ledger/submit-batch. */
export const MAX_API_SUBMIT_BATCH_TXS = 512
/** A submit-batch request checks transactions for at most this long before yielding to other work. */
export const SUBMIT_BATCH_SLICE_MS = 4

/** An amount from JSON: a decimal string or a safe integer, never a fraction. */
function amountParam (value: unknown, name: string): bigint {
  if (typeof value === 'string' && /^\d{1,19}$/.test(value)) return BigInt(value)
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value)
  throw new ApiError(400, 'BadRequest', `${name} must be a whole number of units (a decimal string or an integer)`)
}

function feeParam (value: unknown): bigint | undefined {
  return value === undefined ? undefined : amountParam(value, 'fee')
}

/**
 * What a land transaction in `space` carries: nothing when the ledger knows the space, else the
 * space's signed record (the body's base64 `record`, else that of a space this peer is in).
 */
function spaceRecord (ctx: RouteContext, b: Record<string, unknown>, space: string): { record?: Uint8Array } {
  if (ctx.node.ledger.landSpace(space) != null) return {}
  if (typeof b.record === 'string') return { record: new Uint8Array(Buffer.from(b.record, 'base64')) }
  if (ctx.node.space.isJoined(space)) return { record: ctx.node.space.descriptorBytes(space) }
  throw new ApiError(404, 'UnknownSpaceError', `UnknownSpaceError: the ledger knows no space ${space}, and this peer holds no record of it: join the space first, or send its record`)
}

/**
 * The most a claim pays per cell: the body's `maxPrice`, else the owner's price as this peer sees
 * it now, so a price raised before the claim is final refuses it (PriceAboveLimitError) rather
 * than charging more than the claimant saw.
 */
function maxPrice (ctx: RouteContext, b: Record<string, unknown>, space: string): { maxPrice?: bigint } {
  if (b.maxPrice !== undefined) return { maxPrice: amountParam(b.maxPrice, 'maxPrice') }
  const sp = ctx.node.ledger.landSpace(space)
  return sp != null && sp.owner !== ctx.node.did ? { maxPrice: sp.price } : {}
}

function rectParams (b: Record<string, unknown>): { x: number, y: number, w: number, h: number } {
  return { x: Number(b.x), y: Number(b.y), w: Number(b.w), h: Number(b.h) }
}

function txJson (tx: Tx): Record<string, unknown> {
  return { id: tx.id, sender: tx.sender, nonce: tx.payload.nonce, kind: tx.payload.kind, status: 'pending' }
}

/** A submission's answer: the transaction as pending, or 503 LedgerHaltedError while the ledger cannot write (try again later). */
async function submitted (submit: () => Promise<Tx>): Promise<Record<string, unknown>> {
  try {
    return txJson(await submit())
  } catch (err) {
    if ((err as Error).name === 'LedgerHaltedError') throw new ApiError(503, 'LedgerHaltedError', (err as Error).message)
    throw err
  }
}

/** GET /api/v0/ledger/...: one route, the first path segment says what. */
async function ledgerGet ({ node, rest, url }: RouteContext): Promise<unknown> {
  const ledger = node.ledger
  const [what, arg] = rest.split('/').map(x => decodeURIComponent(x))
  const who = arg == null || arg === '' ? node.did : arg
  switch (what) {
    case 'status': return ledger.status()
    case 'balance': {
      const a = ledger.balance(who)
      return { address: who, balance: a.balance.toString(), nonce: a.nonce, stake: a.stake.toString(), height: ledger.status().height }
    }
    case 'assets': return { address: who, assets: ledger.assetsOf(who) }
    case 'parcels': return { address: who, parcels: ledger.parcelsOf(who) }
    case 'land': {
      // A space's land: who owns it, its price per cell (0: not for sale), its grants and parcels.
      if (arg == null || arg === '') throw new ApiError(400, 'BadRequest', 'a space id is required')
      const sp = ledger.landSpace(arg)
      return {
        space: arg,
        known: sp != null,
        ...(sp != null ? { owner: sp.owner, width: sp.width, depth: sp.depth, price: sp.price.toString() } : {}),
        grants: ledger.grantsIn(arg),
        parcels: ledger.parcelsIn(arg)
      }
    }
    case 'grants': return { address: who, grants: ledger.grantsTo(who) }
    case 'parcels-in': {
      if (arg == null || arg === '') throw new ApiError(400, 'BadRequest', 'a space id is required')
      return { space: arg, parcels: ledger.parcelsIn(arg) }
    }
    case 'tx': {
      if (arg == null) throw new ApiError(400, 'BadRequest', 'a transaction id is required')
      return { id: arg, ...await ledger.txStatus(arg) }
    }
    case 'proof': {
      const key = url.searchParams.get('key')
      if (key == null || key === '') throw new ApiError(400, 'BadRequest', 'key is required (account/<did>, asset/<id>, parcel/<id>, space/<id> or grant/<id>)')
      return ledger.prove(key)
    }
    case 'block': {
      const stored = await ledger.block(intParam(arg ?? '', 'height'))
      if (stored == null) throw new ApiError(404, 'NotFound', `no block ${arg ?? ''}`)
      return { header: stored.block.header, txs: stored.block.txs.map(t => Buffer.from(t).toString('base64')), commit: stored.commit.map(v => Buffer.from(v).toString('base64')) }
    }
    case 'evidence': return { evidence: await ledger.evidence() }
    // For light clients: the genesis (the first trusted validator set) and the set that signed a height.
    case 'genesis': return JSON.parse(genesisJson(ledger.genesis))
    case 'validators': {
      const height = intParam(arg ?? '', 'height')
      const validators = ledger.validatorsAt(height)
      if (validators == null) throw new ApiError(404, 'NotFound', `no validator set known for height ${height}`)
      return { height, validators }
    }
  }
  throw new ApiError(404, 'NotFound', `no endpoint GET /api/v0/ledger/${rest}`)
}

/** A POST that submits one of our own transactions, built from the body. */
function own (path: string, payload: (b: Record<string, unknown>, ctx: RouteContext) => Parameters<RouteContext['node']['ledger']['submitOwn']>[0]): Route {
  return {
    method: 'POST',
    path,
    handle: async ctx => {
      const b = await ctx.body()
      return await submitted(async () => await ctx.node.ledger.submitOwn(payload(b, ctx), feeParam(b.fee)))
    }
  }
}

export const ledgerRoutes: Route[] = [
  { method: 'GET', path: '/api/v0/ledger/*', handle: ledgerGet },
  own('/api/v0/ledger/pay', b => ({ kind: 'transfer', to: str(b, 'to'), amount: amountParam(b.amount, 'amount') })),
  own('/api/v0/ledger/asset/mint', b => ({ kind: 'mint', content: parseCid(b.content), name: str(b, 'name') })),
  own('/api/v0/ledger/asset/transfer', b => ({ kind: 'asset-transfer', asset: str(b, 'asset'), to: str(b, 'to') })),
  own('/api/v0/ledger/parcel/claim', (b, ctx) => ({ kind: 'claim', space: str(b, 'space'), ...rectParams(b), ...spaceRecord(ctx, b, str(b, 'space')), ...maxPrice(ctx, b, str(b, 'space')) })),
  own('/api/v0/ledger/land/grant', (b, ctx) => ({ kind: 'land-grant', space: str(b, 'space'), to: str(b, 'to'), ...rectParams(b), ...spaceRecord(ctx, b, str(b, 'space')) })),
  own('/api/v0/ledger/land/revoke', b => ({ kind: 'land-revoke', grant: str(b, 'grant') })),
  own('/api/v0/ledger/land/price', (b, ctx) => ({ kind: 'land-price', space: str(b, 'space'), price: amountParam(b.price, 'price'), ...spaceRecord(ctx, b, str(b, 'space')) })),
  own('/api/v0/ledger/parcel/transfer', b => ({ kind: 'parcel-transfer', parcel: str(b, 'parcel'), to: str(b, 'to') })),
  own('/api/v0/ledger/stake', b => ({ kind: 'stake', amount: amountParam(b.amount, 'amount') })),
  own('/api/v0/ledger/unstake', b => ({ kind: 'unstake', amount: amountParam(b.amount, 'amount') })),
  {
    method: 'POST',
    path: '/api/v0/ledger/faucet',
    handle: async ({ node, body }) => {
      const b = await body()
      return await submitted(async () => await node.ledger.faucet(typeof b.to === 'string' ? b.to : node.did))
    }
  },
  {
    method: 'POST',
    path: '/api/v0/ledger/submit',
    handle: async ({ node, body }) => {
      const bytes = new Uint8Array(Buffer.from(str(await body(), 'tx'), 'base64'))
      return await submitted(async () => await node.ledger.submit(bytes))
    }
  },
  {
    method: 'POST',
    path: '/api/v0/ledger/submit-batch',
    // For wallets and gateways that relay many users' transactions: one request, a result each.
    handle: async ({ node, body }) => {
      const txs = (await body()).txs
      if (!Array.isArray(txs) || txs.length === 0 || txs.length > MAX_API_SUBMIT_BATCH_TXS || !txs.every(t => typeof t === 'string')) {
        throw new ApiError(400, 'BadRequest', `txs must be an array of 1..${MAX_API_SUBMIT_BATCH_TXS} base64 transactions`)
      }
      // Each transaction is a signature check: the ledger gives the event loop back every
      // SUBMIT_BATCH_SLICE_MS, so a large batch does not hold up the peer's consensus messages;
      // the accepted ones are written as pending in one synced write.
      const results = await node.ledger.submitMany((txs as string[]).map(t => new Uint8Array(Buffer.from(t, 'base64'))), SUBMIT_BATCH_SLICE_MS)
      return { results: results.map(r => r instanceof Error ? { error: r.name, message: r.message } : txJson(r)) }
    }
  }
]
