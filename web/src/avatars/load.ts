/**
 * How an avatar's file becomes a three.js scene: a member's own avatar is a content CID fetched
 * through our peer from the swarm (the same path as the world's models, with its limits and
 * named errors); a default avatar is a file bundled with the client. VRM files are read with
 * three-vrm's loader plugin (the result's `userData.vrm`); plain glTF/GLB files as they are.
 * Whatever fails is a named error (its `name` is what the page shows).
 */
import { GLTFLoader, type GLTF, type GLTFLoaderPlugin, type GLTFParser } from 'three/addons/loaders/GLTFLoader.js'
import { VRMLoaderPlugin } from '@pixiv/three-vrm'
import type { ModelLoader } from '../models/index.ts'

/** A parsed avatar file; `dispose` frees what the loader allocated beyond the scene, if anything. */
export interface AvatarFile { gltf: GLTF, dispose?: () => void }

/** Loads a model of the swarm by CID with extra loader plugins (the world's model pipeline). */
export type SwarmModelLoader = (cid: string, options: { plugins: Array<(parser: GLTFParser) => GLTFLoaderPlugin>, signal?: AbortSignal }) => Promise<AvatarFile>
/** Loads one of the client's own files by URL, as SwarmModelLoader does a CID. */
export type BundledModelLoader = (url: string, options: { plugins: Array<(parser: GLTFParser) => GLTFLoaderPlugin>, signal?: AbortSignal }) => Promise<AvatarFile>

/** An avatar's file could not be read or parsed (and no more precise named error applies). */
export class AvatarLoadError extends Error {
  name = 'AvatarLoadError'
}

/** The plugins an avatar is parsed with: VRM 1.0 (and 0.x) through three-vrm. */
export const AVATAR_PLUGINS: Array<(parser: GLTFParser) => GLTFLoaderPlugin> = [parser => new VRMLoaderPlugin(parser)]

/** `Name: message` of an error, naming plain errors AvatarLoadError. */
export function errorText (err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err))
  const name = e.name === 'Error' || e.name === '' ? 'AvatarLoadError' : e.name
  return `${name}: ${e.message}`.slice(0, 300)
}

async function parse (buffer: ArrayBuffer, resourcePath: string, headers: Record<string, string>, plugins = AVATAR_PLUGINS): Promise<GLTF> {
  const loader = new GLTFLoader()
  loader.setRequestHeader(headers)
  for (const p of plugins) loader.register(p)
  try {
    return await loader.parseAsync(buffer, resourcePath)
  } catch (err) {
    throw new AvatarLoadError(`not a glTF/VRM model: ${(err as Error).message ?? String(err)}`.slice(0, 200))
  }
}

async function read (url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<ArrayBuffer> {
  const res = await fetch(url, { headers, signal })
  if (!res.ok) throw new AvatarLoadError(`HTTP ${res.status} for ${url.slice(0, 120)}`)
  return await res.arrayBuffer()
}

/** Models of the swarm through the client's model pipeline (its limits, named errors and deadline). */
export function swarmLoader (models: ModelLoader): SwarmModelLoader {
  return async (cid, options) => await models.load(cid, options)
}

/** The client's own files (default avatars) through the same pipeline. */
export function bundledLoader (models: ModelLoader): BundledModelLoader {
  return async (url, options) => await models.loadUrl(url, options)
}

/** A default avatar bundled with the client (a URL of ours). */
export async function loadBundled (url: string, signal?: AbortSignal): Promise<AvatarFile> {
  const buffer = await read(url, {}, signal)
  return { gltf: await parse(buffer, new URL('.', new URL(url, location.href)).href, {}) }
}
