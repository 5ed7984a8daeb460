/**
 * What every command file of the `peerverse` CLI shares: the command table's shape, flag parsing,
 * the API client for a data dir, output and error reporting. Node-only (the CLI is a Node shell).
 * Usage errors exit 2, runtime errors exit 1, each with one line on stderr.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { ApiClient } from '../api/client.ts'

/** One command: what `peerverse NAME ...` runs. */
export interface Command {
  /** Runs the command with the arguments after its name. */
  run: (args: string[]) => Promise<void>
  /** Its line in `peerverse --help`; a command without one is listed under a sibling (unpin under pin). */
  summary?: string
}

/** The commands one capability contributes, by name, in the order `peerverse --help` lists them. */
export type Commands = Record<string, Command>

/** A wrong command line: exits 2. */
export class UsageError extends Error {
  name = 'UsageError'
}

export const DEFAULT_DATA_DIR = process.env.PEERVERSE_DATA ?? '.peerverse-data'

const COMMON = {
  data: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' }
} as const satisfies ParseArgsConfig['options']

/** Parses a command's flags (plus --data, --help and --json); a bad flag is a UsageError. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>> (args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0])
  }
}

/** Prints one line on stdout. */
export function out (line: string): void {
  process.stdout.write(line + '\n')
}

/** Reports a command's failure on stderr and returns the exit code: 2 for usage, 1 otherwise. */
export function report (err: unknown): number {
  const e = err as Error
  process.stderr.write(`peerverse: ${e.message}\n`)
  return e.name === 'UsageError' || e.name === 'ConfigError' ? 2 : 1
}

async function requireDir (dir: string): Promise<void> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error()
  } catch {
    throw new UsageError(`data dir ${dir} does not exist (create it with: peerverse init --data ${dir})`)
  }
}

/** The API client of the peer running on the data dir (--data, or the default). */
export async function client (values: { data?: string }): Promise<ApiClient> {
  const dir = resolve(values.data ?? DEFAULT_DATA_DIR)
  await requireDir(dir)
  return ApiClient.forDataDir(dir)
}

/** Checks a whole number of units (up to 19 digits) and returns it as given. */
export function wholeNumber (value: string, name: string): string {
  if (!/^\d{1,19}$/.test(value)) throw new UsageError(`${name} must be a whole number of units, got ${JSON.stringify(value)}`)
  return value
}
