/**
 * The feed's limits as the page checks them before anything is signed (the peer checks again:
 * src/social/feed.ts; a test keeps the two equal), and the page's own for images.
 */

/** Longest post or reply text in UTF-8 bytes (the feed's MAX_TEXT_BYTES). */
export const MAX_POST_TEXT_BYTES = 8 * 1024
/** Longest profile name and bio in UTF-8 bytes (the feed's MAX_NAME_BYTES and MAX_BIO_BYTES). */
export const MAX_PROFILE_NAME_BYTES = 128
export const MAX_PROFILE_BIO_BYTES = 1024
/** Largest image a post may carry, and that a page loads for one. */
export const MAX_IMAGE_BYTES = 8 * 1024 * 1024
