/** The gateway's version, shown by `gateway version` and `GET /status`. */
export const VERSION = "0.1.0";
