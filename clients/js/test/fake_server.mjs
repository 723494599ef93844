// A scripted stand-in for the server, for the tests that need the server to misbehave or
// to show exactly what the client wrote: it accepts TCP connections, decodes the client's
// length-prefixed frames, and writes whatever bytes a test gives it.

import net from "node:net";
import { STEP, tracked } from "./helpers.mjs";

export class FakeServer {
  /** @type {net.Server} */
  #server;
  /** @type {FakeConn[]} */
  #accepted = [];
  /** @type {((conn: FakeConn) => void)[]} */
  #waiting = [];
  /** @type {Set<net.Socket>} */
  #sockets = new Set();

  /** Listens on a free port; closed after the file's tests. */
  static async start() {
    const fake = tracked(new FakeServer());
    await new Promise((resolve) => fake.#server.listen(0, "127.0.0.1", resolve));
    return fake;
  }

  constructor() {
    this.#server = net.createServer((socket) => {
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      const conn = new FakeConn(socket);
      const waiter = this.#waiting.shift();
      if (waiter) waiter(conn);
      else this.#accepted.push(conn);
    });
  }

  get address() {
    const { port } = /** @type {net.AddressInfo} */ (this.#server.address());
    return `tcp://127.0.0.1:${port}`;
  }

  /** The next connection a client opens. @returns {Promise<FakeConn>} */
  accept() {
    const conn = this.#accepted.shift();
    if (conn) return Promise.resolve(conn);
    return withTimeout(new Promise((resolve) => this.#waiting.push(resolve)), "no connection");
  }

  close() {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve(undefined)));
  }
}

export class FakeConn {
  /** @type {net.Socket} */
  socket;
  #buf = Buffer.alloc(0);
  /** @type {{header: Buffer, text: string}[]} */
  #frames = [];
  /** @type {((frame: {header: Buffer, text: string}) => void)[]} */
  #waiting = [];

  /** @param {net.Socket} socket */
  constructor(socket) {
    this.socket = socket;
    socket.on("data", (chunk) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      while (this.#buf.length >= 4 && this.#buf.length >= 4 + this.#buf.readUInt32BE(0)) {
        const length = this.#buf.readUInt32BE(0);
        const frame = { header: this.#buf.subarray(0, 4), text: this.#buf.subarray(4, 4 + length).toString("utf8") };
        this.#buf = this.#buf.subarray(4 + length);
        const waiter = this.#waiting.shift();
        if (waiter) waiter(frame);
        else this.#frames.push(frame);
      }
    });
    socket.on("error", () => {});
  }

  /** The next frame the client sent: its 4 header bytes and its body as text. */
  readRaw() {
    const frame = this.#frames.shift();
    if (frame) return Promise.resolve(frame);
    return withTimeout(new Promise((resolve) => this.#waiting.push(resolve)), "no frame from the client");
  }

  /** The next frame the client sent, parsed. */
  async read() {
    return JSON.parse((await this.readRaw()).text);
  }

  /** Writes bytes as they are. @param {Buffer} bytes */
  writeBytes(bytes) {
    this.socket.write(bytes);
  }

  /** Writes frames, in one write. @param {...Record<string, any>} messages */
  send(...messages) {
    this.socket.write(Buffer.concat(messages.map((m) => frame(m))));
  }
}

/** A length-prefixed frame. @param {Record<string, any> | string} message */
export function frame(message) {
  const body = Buffer.from(typeof message === "string" ? message : JSON.stringify(message), "utf8");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

/** A reply frame's object. */
export function reply(code, msg, detail = {}) {
  return { info: code < 400 ? "system" : "error", response: { time: 1796130611.5, code, msg, detail } };
}

/** A user frame's object. */
export function events(room, payload, history = false) {
  return history ? { info: "user", room, history: true, payload } : { info: "user", room, payload };
}

/** @template T @param {Promise<T>} promise @param {string} what @returns {Promise<T>} */
function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${STEP} ms`)), STEP);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
