/**
 * The error every listener throws when it cannot bind, with a message that
 * names the listener and the address: `listener "web": port 8080 on
 * 127.0.0.1 is already in use`.
 *
 * @module
 */

/** A listener that could not start. */
export class ListenError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ListenError";
  }
}
