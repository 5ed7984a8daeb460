/**
 * The `peerverse` command: dispatches to the commands each capability's file contributes
 * (node.ts, content.ts, social.ts, ledger.ts, space.ts, voice.ts). A new capability is one more file and
 * one more line in CAPABILITIES. Node-only (the CLI is a Node shell over the node and its API).
 * Usage errors exit 2, runtime errors exit 1, each with one line on stderr.
 */
import { out, report, type Commands } from './args.ts'
import { contentCommands } from './content.ts'
import { ledgerCommands } from './ledger.ts'
import { nodeCommands } from './node.ts'
import { socialCommands } from './social.ts'
import { spaceCommands } from './space.ts'
import { voiceCommands } from './voice.ts'

/** Every capability's commands, in the order `peerverse --help` lists them. */
const CAPABILITIES: Commands[] = [
  nodeCommands,
  contentCommands,
  socialCommands,
  ledgerCommands,
  spaceCommands,
  voiceCommands
]

const COMMANDS: Commands = {}
for (const commands of CAPABILITIES) {
  for (const [name, command] of Object.entries(commands)) {
    if (Object.hasOwn(COMMANDS, name)) throw new Error(`two capabilities define the command ${name}`)
    COMMANDS[name] = command
  }
}

const HELP = `peerverse: a peer of the open metaverse

Usage: peerverse <command> [options]

Commands:
${Object.entries(COMMANDS).filter(([, c]) => c.summary != null).map(([name, c]) => `  ${name.padEnd(11)}${c.summary ?? ''}`).join('\n')}

Run 'peerverse <command> --help' for a command's options.
The data dir defaults to $PEERVERSE_DATA or ./.peerverse-data.`

export async function main (argv: string[]): Promise<number> {
  const [command, ...args] = argv
  if (command == null || command === '--help' || command === '-h' || command === 'help') {
    out(HELP)
    return command == null ? 2 : 0
  }
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command].run : undefined
  if (run == null) {
    process.stderr.write(`peerverse: unknown command ${JSON.stringify(command)} (see peerverse --help)\n`)
    return 2
  }
  try {
    await run(args)
    return 0
  } catch (err) {
    return report(err)
  }
}

const code = await main(process.argv.slice(2))
if (code !== 0) process.exit(code)
