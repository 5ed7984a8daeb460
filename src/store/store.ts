/**
 * Persistence: one LevelDB per data dir, opened once per node, a sublevel per service.
 * Services receive only their sublevel, never the whole database. Node-only: LevelDB on disk
 * (a browser peer opens IndexedDB through browser-level instead).
 */
import { ClassicLevel } from 'classic-level'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'

export type BytesSublevel = ReturnType<typeof makeSublevel>

function makeSublevel (db: ClassicLevel<string, Uint8Array>, name: string) {
  return db.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
}

export const STORE_DIR = 'store'

export class StoreLockedError extends Error {
  name = 'StoreLockedError'
}

export class Store {
  readonly db: ClassicLevel<string, Uint8Array>
  private readonly names = new Set<string>()

  private constructor (db: ClassicLevel<string, Uint8Array>) {
    this.db = db
  }

  /** Opens (creating if needed) the store in `dataDir/store`. StoreLockedError when another process holds it. */
  static async open (dataDir: string): Promise<Store> {
    const location = join(dataDir, STORE_DIR)
    await mkdir(location, { recursive: true })
    const db = new ClassicLevel<string, Uint8Array>(location, { keyEncoding: 'utf8', valueEncoding: 'view' })
    try {
      await db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') throw new StoreLockedError(`${location} is in use by another peerverse process`)
      throw err
    }
    return new Store(db)
  }

  /** The sublevel of one service; each name may be taken once, so services never share keys. */
  sublevel (name: string): BytesSublevel {
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`invalid sublevel name ${name}`)
    if (this.names.has(name)) throw new Error(`sublevel ${name} is already taken`)
    this.names.add(name)
    return makeSublevel(this.db, name)
  }

  async close (): Promise<void> {
    if (this.db.status === 'open' || this.db.status === 'opening') await this.db.close()
  }
}
