/**
 * Small helpers of tests that expect a refusal: the API's named error of a call that must fail,
 * and a TCP port on 127.0.0.1 that nothing listens on.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { ApiError } from '../../src/api/errors.ts'

/** The status, named error and message of an API call that must be refused. */
export async function refusal (call: Promise<unknown>): Promise<{ status: number, code: string, message: string }> {
  try {
    await call
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err))
    return { status: err.status, code: err.code, message: err.message }
  }
  assert.fail('the call was accepted')
}

/** A TCP port on 127.0.0.1 that nothing listens on (taken and given back). */
export async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}
