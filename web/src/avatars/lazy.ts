/**
 * The avatar code (three-vrm, the animation, the model cache) is a chunk of its own, fetched when
 * the first member's model is asked for: the page draws its first frame, with members as capsules,
 * without waiting for it. Until it is in, every model is 'loading' (the capsule stands in); if the
 * chunk cannot be fetched, every model is failed with AvatarLoadError and the capsules stay.
 */
import type { AvatarBody, AvatarModelSource } from '../crowd.ts'
import { modelOf } from './key.ts'

type Entry = ReturnType<AvatarModelSource['request']>

export class LazyAvatarModels implements AvatarModelSource {
  private readonly make: () => Promise<AvatarModelSource>
  private inner?: AvatarModelSource
  private started = false
  private disposed = false
  private failure?: Entry

  constructor (make: () => Promise<AvatarModelSource>) {
    this.make = make
  }

  modelOf (did: string, avatar: string | undefined): { key: string, name: string } {
    return modelOf(did, avatar)
  }

  request (key: string): Entry {
    if (this.inner != null) return this.inner.request(key)
    if (this.failure != null) return this.failure
    if (!this.started) {
      this.started = true
      this.make().then(inner => {
        if (this.disposed) inner.dispose()
        else this.inner = inner
      }, (err: unknown) => {
        this.failure = { state: 'failed', error: `AvatarLoadError: the avatar code did not load: ${(err as Error)?.message ?? String(err)}`.slice(0, 300) }
      })
    }
    return { state: 'loading' }
  }

  peek (key: string): Entry | undefined {
    return this.inner?.peek(key) ?? this.failure
  }

  instance (key: string): AvatarBody | undefined {
    return this.inner?.instance(key)
  }

  release (key: string, body: AvatarBody): void {
    this.inner?.release(key, body)
  }

  dispose (): void {
    this.disposed = true
    this.inner?.dispose()
  }
}
