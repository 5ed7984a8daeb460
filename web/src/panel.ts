// What panels share: how they report to the person, and how they load a space's data.
import type { EventHandlers } from './events.ts'

/** Messages for the person: an error with its context (API errors keep their code), or a note. */
export interface Report {
  showError: (context: string, err: unknown) => void
  showInfo: (text: string) => void
}

/**
 * A panel's part in showing a space: load starts its requests (all panels' run together), and
 * what it returns is applied, in panel order, once all are in and the space is still shown.
 */
export interface SpaceLoader {
  load: (id: string, switched: boolean) => Promise<(() => void) | undefined>
}

/** What every panel hands the root: the peer events it handles. */
export interface Panel {
  events: EventHandlers
}
