/** Identity: keys, did:key, signed records. */
export * from './errors.ts'
export * from './ed25519.ts'
export * from './did.ts'
export * from './record.ts'
export * from './keystore.ts'
export * from './binding.ts'
export * from './hash.ts'
export * from './seal.ts'
