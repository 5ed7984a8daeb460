/**
 * The space capability's named errors, in one place so every part throws the same classes and
 * tests (and peer scoring) match them by name. NotAMemberError is the key envelope's (crypto.ts):
 * one class whether a private space has no key for us or an envelope leaves us out.
 */
export { NotAMemberError } from './crypto.ts'
export { InvalidSpaceRecordError, NotSpaceOwnerError } from './records.ts'
export { AdmissionRequiredError, InvalidAdmissionError } from './admission.ts'

export class SpaceNotFoundError extends Error { name = 'SpaceNotFoundError' }
export class NotJoinedError extends Error { name = 'NotJoinedError' }
export class ExcludedError extends Error { name = 'ExcludedError' }
export class SpaceRateLimitError extends Error { name = 'SpaceRateLimitError' }
export class InvalidSpaceRequestError extends Error { name = 'InvalidSpaceRequestError' }
export class TooManySpacesError extends Error { name = 'TooManySpacesError' }
