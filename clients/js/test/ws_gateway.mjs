// A tiny WebSocket endpoint in front of a real roomcast server, with nothing but Node's
// built-ins: `GET /ws` upgrades (RFC 6455: the Sec-WebSocket-Accept handshake, masked client
// frames, unmasked server frames, ping and close), and each text message becomes one
// length-prefixed frame to the server, and back. It stands in for the server's own /ws
// endpoint, which is not on main yet, to test the client's WebSocket mode end to end.

import crypto from "node:crypto";
import http from "node:http";
import net from "node:net";
import { split } from "./helpers.mjs";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const TEXT = 0x1;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/**
 * Starts the gateway to `upstream` ("host:port"); resolves with its ws:// URL and a close().
 * @param {string} upstream
 */
export async function startGateway(upstream) {
  const [host, port] = split(upstream);
  /** @type {Set<net.Socket>} */
  const sockets = new Set();
  const server = http.createServer((_, response) => {
    response.writeHead(404);
    response.end();
  });
  server.on("upgrade", (request, socket) => {
    const key = request.headers["sec-websocket-key"];
    if (request.url !== "/ws" || typeof key !== "string") {
      socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
      return;
    }
    const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    sockets.add(socket);
    bridge(socket, net.connect({ host, port }), sockets);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port: own } = /** @type {net.AddressInfo} */ (server.address());
  return {
    url: `ws://127.0.0.1:${own}/ws`,
    /** Open WebSocket connections. */
    get connections() {
      return sockets.size;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/** @param {net.Socket} ws @param {net.Socket} tcp @param {Set<net.Socket>} sockets */
function bridge(ws, tcp, sockets) {
  tcp.setNoDelay(true);
  let fromClient = Buffer.alloc(0);
  /** @type {Buffer[]} */
  let message = [];
  ws.on("data", (chunk) => {
    fromClient = Buffer.concat([fromClient, chunk]);
    for (;;) {
      const frame = parseFrame(fromClient);
      if (frame === null) return;
      fromClient = fromClient.subarray(frame.size);
      if (frame.opcode === CLOSE) {
        ws.end(wsFrame(CLOSE, frame.payload.subarray(0, 2)));
        tcp.end();
        return;
      }
      if (frame.opcode === PING) {
        ws.write(wsFrame(PONG, frame.payload));
        continue;
      }
      if (frame.opcode !== TEXT && frame.opcode !== 0) continue;
      message.push(frame.payload);
      if (!frame.fin) continue;
      const body = Buffer.concat(message);
      message = [];
      const header = Buffer.alloc(4);
      header.writeUInt32BE(body.length);
      tcp.write(Buffer.concat([header, body]));
    }
  });
  let fromServer = Buffer.alloc(0);
  tcp.on("data", (chunk) => {
    fromServer = Buffer.concat([fromServer, chunk]);
    while (fromServer.length >= 4 && fromServer.length >= 4 + fromServer.readUInt32BE(0)) {
      const length = fromServer.readUInt32BE(0);
      ws.write(wsFrame(TEXT, fromServer.subarray(4, 4 + length)));
      fromServer = fromServer.subarray(4 + length);
    }
  });
  const closeCode = Buffer.from([0x03, 0xe8]); // 1000
  tcp.on("close", () => {
    if (!ws.destroyed) ws.end(wsFrame(CLOSE, closeCode));
  });
  ws.on("close", () => {
    sockets.delete(ws);
    tcp.destroy();
  });
  tcp.on("error", () => {});
  ws.on("error", () => {});
}

/**
 * One frame off the front of `buf`, unmasked; null when it holds only part of one.
 * @param {Buffer} buf
 */
function parseFrame(buf) {
  if (buf.length < 2) return null;
  const fin = (buf[0] & 0x80) !== 0;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let length = buf[1] & 0x7f;
  let at = 2;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    at = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    length = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const mask = masked ? buf.subarray(at, at + 4) : null;
  if (masked) at += 4;
  if (buf.length < at + length) return null;
  const payload = Buffer.from(buf.subarray(at, at + length));
  if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
  return { fin, opcode, payload, size: at + length };
}

/** A server frame (never masked). @param {number} opcode @param {Buffer} payload */
function wsFrame(opcode, payload) {
  let header;
  if (payload.length < 126) {
    header = Buffer.from([0x80 | opcode, payload.length]);
  } else if (payload.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([header, payload]);
}
