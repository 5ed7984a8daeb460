/**
 * The browser client's composition root: builds the shared context and mounts the panels.
 * The client is a 3D view of a space and a side panel (spaces, explore, people, chat, wallet,
 * building, network),
 * talking only to this person's own peer through its local API and event WebSocket. The view is
 * scene.ts, walking controls.ts, smoothing interp.ts; each panel is a file in panels/; the state
 * they share is store.ts, and the peer's events reach them through one table (events.ts). Links
 * (a space, a network to join, a file) open from the address bar's `#...` or from a paste, in the
 * one format the peers use (links.ts).
 */
import { Api, EventStream, takeToken } from './api.ts'
import { LazyAvatarModels } from './avatars/lazy.ts'
import { mountLook } from './avatars/look.ts'
import { Controls } from './controls.ts'
import type { AvatarView } from './crowd.ts'
import { $ } from './dom.ts'
import { EventTable } from './events.ts'
import type { Quat, Vec3 } from './interp.ts'
import { hashLink, type Link } from './links.ts'
import { mountBuild } from './panels/build.ts'
import { mountChat } from './panels/chat.ts'
import { mountExplore } from './panels/explore.ts'
import { mountFile } from './panels/file.ts'
import { mountLand, type LandHookView } from './panels/land.ts'
import { mountNetwork } from './panels/network.ts'
import { mountModeration, type ModerationHookView } from './panels/moderation.ts'
import { mountPeople } from './panels/people.ts'
import { avatarAt, avatarScreenPoint } from './pick-person.ts'
import { mountSpaces } from './panels/spaces.ts'
import { mountProfile } from './panels/profile.ts'
import { mountTimeline, type PostView } from './panels/timeline.ts'
import { mountStatus, setBannerText } from './panels/status.ts'
import { mountWallet } from './panels/wallet.ts'
import { View } from './scene.ts'
import { Store } from './store.ts'
import { mountViewport } from './viewport.ts'
import { mountVoice, type VoiceHookView } from './voice/index.ts'
import { mountShare, type BoardView } from './share/index.ts'

declare global {
  interface Window {
    peerverse?: Readonly<{
      /**
       * Other members: where drawn, their name tag (shown, or why not), distance to our eye, level of
       * detail; the avatar worn (CID or default's name), whether drawn as its model, its animation, its failure.
       */
      avatars: () => AvatarView[]
      /** The crowd in the last frame: members, bodies drawn near and far (models among the near), tags shown, draw calls. */
      crowd: () => { members: number, near: number, far: number, tags: number, models: number, calls: number, triangles: number }
      /** Placed objects: their model, its load stage ('bounds' | 'geometry' | 'full' | 'failed'), the named error if any. */
      objects: () => ReturnType<View['objectList']>
      me: () => { position: Vec3, yaw: number, rotation: Quat }
      space: () => string | null
      did: () => string | null
      frames: () => number
      network: () => unknown
      listings: () => unknown[]
      /** Voice: connected for this space, our microphone not sending, what each member plays. */
      voice: () => VoiceHookView
      /** Boards of the space shown: where, and the frames of their video decoded and drawn so far. */
      boards: () => BoardView[]
      /** The loudest frequencies (Hz, dB) of all the voice being played now. */
      spectrum: () => Array<{ hz: number, db: number }>
      /** The wallet's own check of what it shows: verified at a height, or the named error. */
      wallet: () => { verified: boolean, height: number | null, error?: string, message?: string }
      /** The timeline shown: posts newest first, each with its replies and likes. */
      timeline: () => { posts: PostView[] }
      /** Whom we blocked and muted; whether the owner's controls are shown, and the policy of the space shown. */
      moderation: () => ModerationHookView
      /** Where a member's avatar shows on the canvas (CSS pixels from its top left), null when off the view. */
      avatarScreen: (did: string) => { x: number, y: number } | null
      /** The land of the space shown (owner, price, grants, parcels, at a height) and our land transactions. */
      land: () => LandHookView
    }>
  }
}

const token = takeToken()

if (token == null) {
  setBannerText('no-token', 'This page needs the link your peer printed (http://127.0.0.1:PORT/?token=…). Run `peerverse start` and open the "open:" URL it shows.')
} else {
  main(token)
}

function main (token: string): void {
  const api = new Api(token)
  // Members' avatars load from the swarm like the world's models.
  const view = new View($<HTMLCanvasElement>('scene'), $('labels'), token, models => new LazyAvatarModels(async () => {
    const [{ AvatarModels }, { bundledLoader, swarmLoader }] = await Promise.all([import('./avatars/cache.ts'), import('./avatars/load.ts')])
    return new AvatarModels(swarmLoader(models), bundledLoader(models))
  }))
  const controls = new Controls(view)
  const store = new Store()
  const table = new EventTable()
  const events = new EventStream(api, {
    onState: (s, detail) => { if (status.streamState(s, detail)) void resync() },
    onEvent: msg => {
      table.dispatch(msg)
      if (msg.type.startsWith('directory:')) explore.directoryEvent()
    }
  })

  const status = mountStatus({ api, store })
  const build = mountBuild({ api, store, view, report: status })
  const viewport = mountViewport({ view, controls, store, send: msg => events.send(msg), select: build.select, pickPerson: (x, y) => pickPerson(x, y) })
  view.onLoadingChange = build.loadingChanged
  view.start()
  const wallet = mountWallet({ api, store, report: status, placeModel: build.placeModel })
  const voice = mountVoice({ api, store, view, report: status })
  const share = mountShare({ api, store, view, report: status })
  const moderation = mountModeration({ api, store, view, report: status, peopleChanged: () => { people.render() } })
  /** A click on someone's avatar opens their card (mute, block, the owner's menu). */
  function pickPerson (x: number, y: number): boolean {
    const did = avatarAt(view.camera, view.avatarList(), x, y)
    if (did != null) moderation.showCard(did)
    return did != null
  }
  // The timeline and profiles (social): a person's profile opens from the people list or a post's author.
  const timeline = mountTimeline({ api, report: status, openProfile: did => { void profile.open(did) }, myDid: () => store.did })
  // Our profile's avatar goes with our presence in the space shown.
  const look = mountLook({ api, store, report: status })
  const profile = mountProfile({ api, report: status, myDid: () => store.did, changed: () => { void timeline.refresh() }, avatarChanged: look.setAvatar })
  const people = mountPeople({ api, store, view, report: status, payTo: wallet.payTo, decorate: [voice.decorate, profile.decorate, moderation.decorate] })
  const chat = mountChat({ api, store, report: status })
  const land = mountLand({ api, store, view, report: status })
  const spaces = mountSpaces({
    api,
    store,
    view,
    report: status,
    setJoining: status.setJoining,
    loaders: [people, chat, build, moderation, land],
    poseChanged: viewport.poseChanged,
    openLink: link => { void openLink(link) },
    avatar: look.current
  })
  const network = mountNetwork({ api, report: status, joined: resync })
  const explore = mountExplore({ api, store, report: status, openLink })
  const file = mountFile({ api, report: status })
  for (const panel of [status, people, chat, wallet, build, network, explore, voice, timeline, profile, moderation, land]) table.register(panel.events)

  /** Opens a link of any kind: joins its space, offers to join its network, or fetches its file. */
  async function openLink (link: Link): Promise<void> {
    if (link.kind === 'space') await spaces.enterLink(link)
    else if (link.kind === 'join') network.offerJoin(link)
    else await file.open(link)
  }

  /** The address bar's link, when it names a network or a file (a space's is picked with the spaces). */
  function openHashLink (spaceToo: boolean): void {
    const link = hashLink()
    if (link instanceof Error) { status.showError('link', link); return }
    if (link == null || (link.kind === 'space' && (!spaceToo || link.target === store.spaceId))) return
    void openLink(link)
  }
  openHashLink(false)
  window.addEventListener('hashchange', () => { openHashLink(true) })

  let syncing: Promise<void> | null = null
  let syncAgain = false

  /** At start and after each reconnect: everything we may have missed (one at a time). */
  async function resync (): Promise<void> {
    if (syncing != null) { syncAgain = true; return await syncing }
    syncing = (async () => {
      do {
        syncAgain = false
        await syncOnce()
      } while (syncAgain)
    })()
    try { await syncing } finally { syncing = null }
  }

  async function syncOnce (): Promise<void> {
    await status.refresh()
    if (status.badToken) return
    void wallet.refresh()
    void network.refresh()
    void explore.refresh()
    void timeline.refresh()
    void profile.refresh()
    await spaces.refresh()
    if (store.spaceId != null) await spaces.load(store.spaceId)
    else await spaces.pickInitial()
    wallet.pollPending()
    viewport.poseChanged()
  }

  events.start()
  void resync()

  // The debug hook: read-only views for tests.
  window.peerverse = Object.freeze({
    avatars: () => view.avatarList(),
    crowd: () => view.crowdStats(),
    objects: () => view.objectList(),
    me: () => ({ position: [...view.me.position] as Vec3, yaw: view.me.yaw, rotation: view.myRotation() }),
    space: () => store.spaceId,
    did: () => store.did,
    frames: () => view.frames,
    network: () => network.status,
    listings: () => explore.listings,
    voice: () => voice.hook(),
    boards: () => share.boards(),
    spectrum: () => voice.spectrum(),
    wallet: () => wallet.check(),
    timeline: () => timeline.hook(),
    moderation: () => moderation.hook(),
    avatarScreen: (did: string) => {
      const a = view.avatarList().find(m => m.did === did)
      return a == null ? null : avatarScreenPoint(view.camera, a.position, view.canvas.clientWidth, view.canvas.clientHeight)
    },
    land: () => land.hook()
  })
}
