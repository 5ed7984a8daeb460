/**
 * What a shared board's video is at most, in one place for the peer and the browser client (which
 * imports this file: it has no imports of its own). The client encodes within these; the peer's
 * chunk limits (wire.ts) and rates (share.ts) are sized from them.
 */

/** Bits a second a client encodes a shared stream at, at most. */
export const VIDEO_MAX_BITRATE = 600_000
/** The largest picture a client encodes (larger sources are scaled down to fit). */
export const VIDEO_MAX_WIDTH = 640
export const VIDEO_MAX_HEIGHT = 360
/** Frames a second a client encodes at most (enough for slides and a face, and under the chunk rate). */
export const VIDEO_MAX_FPS = 12
/** Largest payload of one VIDEO chunk (a frame is cut into chunks this size). */
export const MAX_VIDEO_CHUNK_BYTES = 1024
/** Largest encoded video frame (a keyframe at 640x360 and 600 kbps is far under). */
export const MAX_VIDEO_FRAME_BYTES = 96 * 1024
/**
 * A viewer's peer asks a board's sharer for a keyframe (KEYFRAME) at most this often, and a
 * sharer's peer passes a request on to its client at most this often per space (more are dropped
 * as 'rate'): a viewer that comes in mid-stream or lost a frame starts again at once, and a flood
 * of requests cannot make a sharer send nothing but keyframes.
 */
export const KEYFRAME_REQUEST_MIN_MS = 1_000
