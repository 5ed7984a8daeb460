/**
 * The voice capability's named errors: what a peer's bad input is reported as (peer scoring
 * matches them by name) and what our own caller is told. NotJoinedError and ExcludedError carry
 * the same names as the space capability's, so the API answers them alike.
 */
export class NotJoinedError extends Error { name = 'NotJoinedError' }
export class ExcludedError extends Error { name = 'ExcludedError' }
/** The owner's policy mutes us in that space. */
export class OwnerMutedError extends Error { name = 'OwnerMutedError' }
/** A voice frame that does not parse (unknown type, wrong length, bad fields). */
export class InvalidVoiceFrameError extends Error { name = 'InvalidVoiceFrameError' }
/** An audio payload over MAX_VOICE_PAYLOAD_BYTES. */
export class VoiceFrameTooLargeError extends Error { name = 'VoiceFrameTooLargeError' }
/** Frames faster than VOICE_FRAMES_PER_SECOND, or streams past MAX_VOICE_STREAMS_PER_PEER. */
export class VoiceRateLimitError extends Error { name = 'VoiceRateLimitError' }
/** A stream from a did we do not see on that peer in that space. */
export class VoiceNotMemberError extends Error { name = 'VoiceNotMemberError' }
/** A stream's opening that is not { space, binding }. */
export class InvalidVoiceOpenError extends Error { name = 'InvalidVoiceOpenError' }
/** A stream from a member the user blocked: refused, counted, not blamed on the peer. */
export class VoiceBlockedError extends Error { name = 'VoiceBlockedError' }
/** Video sent while we share no board in that space. */
export class NotSharingError extends Error { name = 'NotSharingError' }
