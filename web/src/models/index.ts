/** The model pipeline: limits and named errors, pure glTF checks, and the loader three.js sits behind. */
export * from './limits.ts'
export { ModelLoader, KTX2_WORKER_URL, disposeObject, describeError, withTimeout, type LoadOptions, type LoadedModel, type ModelLoaderInit, type ModelStage } from './loader.ts'
export { checkGltf, checkImage, detectFormat, geometryCut, imageSize, modelBounds, readGlbPrefix, stripToGeometry, type Bounds, type GltfJson } from './gltf.ts'
