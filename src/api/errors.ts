/** An API error: an HTTP status and a named code, thrown by the server and rebuilt by the client. */
export class ApiError extends Error {
  name = 'ApiError'
  readonly status: number
  readonly code: string
  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}
