/**
 * Named errors for identity and signed records. Tests and peers check `name`, never the message.
 */

export class InvalidDidError extends Error {
  name = 'InvalidDidError'
}

export class InvalidKeyError extends Error {
  name = 'InvalidKeyError'
}

export class MalformedRecordError extends Error {
  name = 'MalformedRecordError'
}

export class NonCanonicalEncodingError extends Error {
  name = 'NonCanonicalEncodingError'
}

export class RecordTooLargeError extends Error {
  name = 'RecordTooLargeError'
}

export class InvalidSignatureError extends Error {
  name = 'InvalidSignatureError'
}

export class UnexpectedRecordTypeError extends Error {
  name = 'UnexpectedRecordTypeError'
}

export class IdentityExistsError extends Error {
  name = 'IdentityExistsError'
}

export class IdentityNotFoundError extends Error {
  name = 'IdentityNotFoundError'
}

export class PeerBindingMismatchError extends Error {
  name = 'PeerBindingMismatchError'
}
