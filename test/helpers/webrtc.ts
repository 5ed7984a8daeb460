/**
 * Releases the native WebRTC library's peer connections once a test file that ran WebRTC in its
 * own process is done. node-datachannel can keep a process alive after every libp2p node in it
 * has stopped (a native callback left registered); its `cleanup()` closes what remains. It closes
 * every peer connection in the process, so it runs only after the file's last test. If something
 * else still holds the process open, the active resources are printed after LINGER_REPORT_MS, so
 * a hang in CI names its cause.
 */
import { after } from 'node:test'
import { cleanup } from 'node-datachannel'

/** How long after the file's last test a process still alive prints what holds it. */
export const LINGER_REPORT_MS = 20_000

/** Registers, at the top level of a test file, the release after its last test. */
export function releaseWebRTCAfterAll (): void {
  after(() => {
    cleanup()
    const timer = setTimeout(() => {
      process.stderr.write(`process still alive ${LINGER_REPORT_MS} ms after its last test; active resources: ${JSON.stringify(process.getActiveResourcesInfo())}\n`)
    }, LINGER_REPORT_MS)
    timer.unref()
  })
}
