/**
 * The limits a model from the swarm must stay within before three.js parses it, and the named
 * errors a model that does not gets. Anyone can place or wear any CID, so every count that makes
 * the page allocate (bytes, vertices, nodes, materials, texture pixels) is capped here and checked
 * on the glTF JSON and image headers first, and a parse that does not end is abandoned.
 */

/** Largest model we read (bytes); bigger ones fail rather than exhausting memory. */
export const MAX_MODEL_BYTES = 256 * 1024 * 1024
/** Largest glTF JSON (a GLB's JSON chunk or a .gltf file) we parse. */
export const MAX_MODEL_JSON_BYTES = 8 * 1024 * 1024
/** Most vertices (sum of POSITION accessor counts over all primitives) in one model. */
export const MAX_MODEL_VERTICES = 4_000_000
/** Most nodes in one model. */
export const MAX_MODEL_NODES = 20_000
/** Most meshes in one model. */
export const MAX_MODEL_MESHES = 10_000
/** Most materials in one model. */
export const MAX_MODEL_MATERIALS = 1_000
/** Most textures (and images) in one model. */
export const MAX_MODEL_TEXTURES = 512
/** Most pixels in one texture image (width x height), read from its header before any decode. */
export const MAX_TEXTURE_PIXELS = 4096 * 4096
/** Longest side of one texture image, in pixels. */
export const MAX_TEXTURE_SIDE = 8192
/** A parse still running after this long is abandoned (its late result disposed). */
export const MODEL_LOAD_TIMEOUT_MS = 20_000

/** Every failure of the model pipeline; `name` is the subclass's name. */
export class ModelError extends Error { name = 'ModelError' }
/** The bytes are not glTF (neither a GLB nor glTF JSON). */
export class NotAModelError extends ModelError { name = 'NotAModelError' }
/** The model's bytes are over MAX_MODEL_BYTES. */
export class ModelTooLargeError extends ModelError { name = 'ModelTooLargeError' }
/** The glTF JSON is over MAX_MODEL_JSON_BYTES. */
export class ModelJsonTooLargeError extends ModelError { name = 'ModelJsonTooLargeError' }
/** More vertices than MAX_MODEL_VERTICES. */
export class TooManyVerticesError extends ModelError { name = 'TooManyVerticesError' }
/** More nodes or meshes than MAX_MODEL_NODES / MAX_MODEL_MESHES. */
export class TooManyNodesError extends ModelError { name = 'TooManyNodesError' }
/** More materials or textures than MAX_MODEL_MATERIALS / MAX_MODEL_TEXTURES. */
export class TooManyMaterialsError extends ModelError { name = 'TooManyMaterialsError' }
/** A texture over MAX_TEXTURE_PIXELS or MAX_TEXTURE_SIDE (or one whose header cannot be read). */
export class TextureTooLargeError extends ModelError { name = 'TextureTooLargeError' }
/** Structure that would read outside the data (accessor, bufferView or chunk ranges; bad indices). */
export class MalformedModelError extends ModelError { name = 'MalformedModelError' }
/** The parse did not finish within MODEL_LOAD_TIMEOUT_MS. */
export class ModelLoadTimeoutError extends ModelError { name = 'ModelLoadTimeoutError' }
/** Our peer could not give the bytes (HTTP error, or a directory without a model). */
export class ModelFetchError extends ModelError { name = 'ModelFetchError' }
