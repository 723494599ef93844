// The client's WebSocket mode (what browsers use) against a real server, through the tiny
// gateway of test/ws_gateway.mjs, with the runtime's own WebSocket class: the one of Node 22,
// or of Node 20 run with --experimental-websocket (tests/js_client.rs passes the flag when
// this Node knows it). Skipped, with the reason, when the runtime has no WebSocket.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Invalid, NotInRoom, RoomcastClient } from "../roomcast.js";
import { STEP, cleanly, env, isEvent, isMsg, join, loggedIn, needsServer, say, tracked, unique } from "./helpers.mjs";
import { startGateway } from "./ws_gateway.mjs";

const ADDR = env("ROOMCAST_ADDR");
const skip = needsServer ||
  (typeof globalThis.WebSocket !== "function" &&
    `this Node (${process.version}) has no WebSocket: Node 22+, or Node 20.10+ with --experimental-websocket`);

/** A client over WebSocket, logged in, with its stream and the lobby's list read. */
async function overWebSocket(url, user, options = {}) {
  const client = tracked(new RoomcastClient(url, options));
  await client.connect();
  const events = client.events();
  assert.equal(await client.login(user), user);
  await events.take(isEvent("lobby", "list", user), { timeout: STEP });
  return { client, events };
}

test("over WebSocket a client logs in, chats with a TCP client, and gets typed errors", { skip }, cleanly(async () => {
  const gateway = tracked(await startGateway(ADDR));
  const room = unique("web ☕");
  const web = await overWebSocket(gateway.url, unique("browser"));
  const tcp = await loggedIn(ADDR, unique("native"));
  await join(web.client, web.events, room);
  await join(tcp.client, tcp.events, room);

  web.client.msg(room, { text: "from the browser", n: 1 });
  const got = await tcp.events.take(isMsg(room, { text: "from the browser", n: 1 }), { timeout: STEP });
  assert.equal(got.event.user, web.client.user);
  await say(tcp.client, tcp.events, room, "from the headset");
  await web.events.take(isMsg(room, "from the headset"), { timeout: STEP });

  web.client.transform(room, [1, 2, 3], [0, 0, 0, 1]);
  const pose = await tcp.events.take(isEvent(room, "transform", web.client.user), { timeout: STEP });
  assert.deepEqual(pose.event.data.pos, { x: 1, y: 2, z: 3 });

  web.client.msg(unique("elsewhere"), "x");
  const problem = await web.events.take((i) => i.kind === "problem", { timeout: STEP });
  assert.ok(problem.error instanceof NotInRoom);
  await assert.rejects(web.client.history(room, { after: 0, limit: -1 }), Invalid);
  const history = await web.client.history(room, { after: 0, limit: 100 });
  assert.ok(history.some((e) => e.data === "from the headset"));
  assert.ok((await web.client.rooms()).some((r) => r.room === room));
  await web.client.logout();
  await tcp.events.take(isEvent(room, "leave", web.client.user), { timeout: STEP });
}));

test("over WebSocket a dropped connection resumes: every msg once, in order", { skip }, cleanly(async () => {
  const gateway = tracked(await startGateway(ADDR));
  const room = unique("web-resume");
  const web = await overWebSocket(gateway.url, unique("tab"), { autoReconnect: true });
  const tcp = await loggedIn(ADDR, unique("peer"));
  await join(web.client, web.events, room);
  await join(tcp.client, tcp.events, room);
  const heard = web.client.events();
  await say(tcp.client, tcp.events, room, "one");
  await web.events.take(isMsg(room, "one"), { timeout: STEP });

  web.client.abort();
  tcp.client.msg(room, "two"); // before or during the resume: replayed or live, never twice
  const back = await web.events.take((i) => i.kind === "reconnect", { timeout: STEP });
  assert.equal(back.resumed, true);
  await say(tcp.client, tcp.events, room, "three");
  const msgs = [];
  for (;;) {
    const item = await heard.take(
      (i) => i.kind === "event" && i.room === room && i.event.type === "msg",
      { timeout: STEP },
    );
    msgs.push(item.event.data);
    if (item.event.data === "three") break;
  }
  assert.deepEqual(msgs, ["one", "two", "three"]);
  assert.equal(web.client.generation, 2);
}));
