/**
 * A libp2p Datastore over one sublevel, so the peer store (known peers, their addresses and keys)
 * and DHT records survive a restart in the node's own LevelDB. What libp2p keeps here is a cache
 * of the network's state: while the store refuses writes (a full disk) a write is dropped, not
 * failed, so dialling, identify and stopping go on as before (libp2p's own updates would otherwise
 * throw out of a protocol's unhandle or an identify).
 */
import { logger } from '@libp2p/logger'
import { BaseDatastore } from 'datastore-core'
import { Key, type Pair, type Query, type KeyQuery, type Batch } from 'interface-datastore'
import { NotFoundError } from 'interface-store'
import { isStoreWriteError } from './errors.ts'
import type { BytesSublevel } from './store.ts'

const log = logger('peerverse:store:datastore')

/** Runs a write; a StoreWriteError (the store refusing writes) is logged and dropped. */
async function cached (what: string, write: () => Promise<unknown>): Promise<void> {
  try {
    await write()
  } catch (err) {
    if (!isStoreWriteError(err)) throw err
    log('%s not saved while the store refuses writes: %s', what, err.message)
  }
}

export class LevelDatastore extends BaseDatastore {
  private readonly level: BytesSublevel

  constructor (level: BytesSublevel) {
    super()
    this.level = level
  }

  async put (key: Key, value: Uint8Array): Promise<Key> {
    await cached(`put ${key.toString()}`, async () => this.level.put(key.toString(), value))
    return key
  }

  async get (key: Key): Promise<Uint8Array> {
    const value = await this.level.get(key.toString())
    if (value === undefined) throw new NotFoundError(`no value for ${key.toString()}`)
    return value
  }

  async has (key: Key): Promise<boolean> {
    return (await this.level.get(key.toString())) !== undefined
  }

  async delete (key: Key): Promise<void> {
    await cached(`delete ${key.toString()}`, async () => this.level.del(key.toString()))
  }

  batch (): Batch {
    const ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }> = []
    return {
      put: (key: Key, value: Uint8Array) => { ops.push({ type: 'put', key: key.toString(), value }) },
      delete: (key: Key) => { ops.push({ type: 'del', key: key.toString() }) },
      commit: async () => { await cached(`batch of ${ops.length}`, async () => this.level.batch(ops)) }
    }
  }

  async * _all (q: Query): AsyncGenerator<Pair> {
    for await (const [key, value] of this.level.iterator(rangeOf(q.prefix))) {
      yield { key: new Key(key, false), value }
    }
  }

  async * _allKeys (q: KeyQuery): AsyncGenerator<Key> {
    for await (const key of this.level.keys(rangeOf(q.prefix))) {
      yield new Key(key, false)
    }
  }
}

function rangeOf (prefix: string | undefined): { gte?: string, lt?: string } {
  if (prefix == null || prefix === '' || prefix === '/') return {}
  return { gte: prefix, lt: prefix + '\xff' }
}
