/**
 * Test helper: caps how often a page's requestAnimationFrame callbacks run. The client draws its
 * scene on every animation frame; in headless Chromium with software WebGL (SwiftShader) a
 * 1280x800 frame costs about 100 ms of CPU, so each page takes a whole core, and two or three
 * pages starve the peers a test drives. Capping the rate leaves every frame the client draws a
 * real one (same code, same state), only fewer of them: the client moves by elapsed time (its
 * step is capped at 0.1 s), so at a low rate walking takes longer but goes the same way.
 * Playwright's own checks run in their own world and keep the browser's real rate.
 */
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core'

/** Animation frames a second a test page gets. */
export const TEST_FRAMES_PER_SECOND = 5

/** Makes every page of `context` run its animation frames at most `fps` times a second. */
export async function capFrameRate (context: BrowserContext, fps = TEST_FRAMES_PER_SECOND): Promise<void> {
  await context.addInitScript((rate: number) => {
    const interval = 1000 / rate
    const raf = window.requestAnimationFrame.bind(window)
    const cancel = window.cancelAnimationFrame.bind(window)
    const pending = new Map<number, { timer?: ReturnType<typeof setTimeout>, frame?: number }>()
    let last = -Infinity
    let seq = 0
    window.requestAnimationFrame = (cb: FrameRequestCallback): number => {
      const id = ++seq
      const ask = (): void => {
        pending.set(id, {
          frame: raf(t => {
            pending.delete(id)
            if (t - last >= interval - 1) last = t
            cb(t)
          })
        })
      }
      const wait = last + interval - performance.now()
      if (wait <= 1) ask()
      else pending.set(id, { timer: setTimeout(ask, wait) })
      return id
    }
    window.cancelAnimationFrame = (id: number): void => {
      const p = pending.get(id)
      if (p?.timer != null) clearTimeout(p.timer)
      if (p?.frame != null) cancel(p.frame)
      pending.delete(id)
    }
  }, fps)
}

/** A page in a new context of `browser` (with `options`), its animation frames capped at `fps`. */
export async function cappedPage (browser: Browser, options: BrowserContextOptions = {}, fps = TEST_FRAMES_PER_SECOND): Promise<Page> {
  const context = await browser.newContext(options)
  await capFrameRate(context, fps)
  return await context.newPage()
}
