/**
 * The ledger's land and asset limits as the page checks them before anything is signed (the
 * ledger checks again: src/ledger/tx.ts and src/ledger/land.ts, which the bundle does not import;
 * a test keeps the two equal).
 */

/** Parcel coordinates lie within [0, MAX_GRID) (the ledger's MAX_GRID). */
export const MAX_GRID = 1 << 20
/** Longest side of one parcel, in cells (the ledger's MAX_PARCEL_SIDE). */
export const MAX_PARCEL_SIDE = 1024
/** Highest price per cell an owner may set or a claim may agree to (the ledger's MAX_LAND_PRICE). */
export const MAX_LAND_PRICE = 1n << 40n
/** Longest asset name (the ledger's MAX_NAME_LENGTH). */
export const MAX_ASSET_NAME_LENGTH = 128
