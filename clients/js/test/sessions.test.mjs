// Sessions (protocol.md §9) against real servers: a connection cut by a failing network
// (tests/support/proxy.rs, driven through the control port of tests/js_client.rs) resumes
// with exactly the events it missed; an expired session logs in afresh and joins its rooms
// again; a takeover, a 413 and a shutdown end the client without a reconnect; keep-alive
// pings hold an idle connection open.
//
// The tests of this file share the proxies, so they run one after another (node:test runs
// the tests of one file in order).

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Conflict,
  ReconnectFailed,
  RoomcastClient,
  TimedOut,
  TooLarge,
  Unavailable,
} from "../roomcast.js";
import { STEP, cleanly, tracked, control, env, isEvent, isMsg, join, loggedIn, needsServer, say, unique } from "./helpers.mjs";

const ADDR = env("ROOMCAST_ADDR");
const PROXY = env("ROOMCAST_PROXY");
const SHORT = env("ROOMCAST_SHORT_ADDR");
const SHORT_PROXY = env("ROOMCAST_SHORT_PROXY");
const DOOMED = env("ROOMCAST_DOOMED_ADDR");
const DOOMED_PROXY = env("ROOMCAST_DOOMED_PROXY");

const isKind = (kind) => (item) => item.kind === kind;
const msgData = (items) => items.filter((i) => i.kind === "event" && i.event.type === "msg").map((i) => i.event.data);

/** Every item of a stream in `room` (and reconnects), up to the msg carrying `last`. */
async function until(events, room, last) {
  const items = [];
  for (;;) {
    const item = await events.take((i) => i.room === room || i.kind === "reconnect", { timeout: STEP });
    items.push(item);
    if (isMsg(room, last)(item)) return items;
  }
}

/** Leaves the lobby, so only the test's own room sends this client frames. */
async function leaveLobby({ client, events }) {
  client.leave("lobby");
  await events.take(isEvent("lobby", "leave", client.user), { timeout: STEP });
}

test("a connection cut mid-frame resumes with exactly the missed events, none lost, none twice", { skip: needsServer }, cleanly(async () => {
  const room = unique("den");
  const bob = await loggedIn(ADDR, unique("bob"));
  const alice = await loggedIn(PROXY, unique("alice"), { autoReconnect: true });
  await leaveLobby(alice);
  await join(alice.client, alice.events, room);
  await join(bob.client, bob.events, room);
  const heard = alice.client.events(); // everything alice gets from here on
  for (let n = 0; n < 5; n++) await say(bob.client, bob.events, room, `m${n}`);
  await alice.events.take(isMsg(room, "m4"), { timeout: STEP });

  // The next frame reaches alice whole, the one after it only half; then the network is down.
  await control("main cut_after 1");
  await say(bob.client, bob.events, room, "m5");
  await say(bob.client, bob.events, room, "m6");
  await bob.events.take(isEvent(room, "away", alice.client.user), { timeout: STEP });
  await alice.events.take(isKind("reconnecting"), { timeout: STEP });

  // While down: a request waits for the reconnect, a msg is queued.
  const pong = alice.client.ping();
  alice.client.msg(room, "sent while down");
  alice.client.transform(room, [7, 1.6, 0], [0, 0, 0, 1]); // kept: the latest pose goes out once back
  assert.equal(alice.client.transform(room, [8, 1.6, 0], [0, 0, 0, 1]), false);
  for (let n = 7; n < 10; n++) await say(bob.client, bob.events, room, `m${n}`);
  // The first attempt met the network down (the proxy refuses): restore during the backoff.
  await alice.events.take((i) => i.kind === "reconnecting" && i.attempt === 2, { timeout: STEP });
  await control("main restore");

  const back = await alice.events.take(isKind("reconnect"), { timeout: STEP });
  assert.equal(back.resumed, true);
  assert.equal(back.missed, 5, JSON.stringify(back));
  assert.deepEqual(back.missedTypes, { msg: 4, away: 1 });
  assert.deepEqual(back.gaps, []);
  assert.ok(back.attempts >= 2, JSON.stringify(back));
  assert.equal((await pong).msg, "pong");
  await bob.events.take(isEvent(room, "back", alice.client.user), { timeout: STEP });
  await bob.events.take(isMsg(room, "sent while down"), { timeout: STEP });
  const pose = await bob.events.take(isEvent(room, "transform", alice.client.user), { timeout: STEP });
  assert.deepEqual(pose.event.data.pos, { x: 8, y: 1.6, z: 0 }, "the latest pose set while down");
  await say(bob.client, bob.events, room, "m10");

  const items = await until(heard, room, "m10");
  const expected = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "sent while down", "m10"];
  assert.deepEqual(msgData(items), expected);
  const replayed = items.filter((i) => i.kind === "event" && i.replayed).map((i) => i.event.type === "msg" ? i.event.data : i.event.type);
  assert.deepEqual(replayed, ["m6", "away", "m7", "m8", "m9"]);
  // The reconnect item comes before the replay.
  const at = items.findIndex(isKind("reconnect"));
  assert.ok(at >= 0 && items.slice(at + 1).some(isMsg(room, "m6")), "reconnect first, then the replay");
  const seqs = items.filter((i) => i.kind === "event" && Number.isInteger(i.event.seq)).map((i) => i.event.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "seqs in order");
  assert.equal(new Set(seqs).size, seqs.length, "no event twice");
  assert.equal(alice.client.generation, 2);
  await Promise.all([alice.client.close(), bob.client.close()]);
}));

test("a network that stays down ends in ReconnectFailed after the attempts", { skip: needsServer }, cleanly(async () => {
  const frank = await loggedIn(PROXY, unique("frank"), {
    autoReconnect: true,
    reconnectAttempts: 3,
    reconnectDelay: 20,
    reconnectMaxDelay: 40,
  });
  await control("main cut_now");
  try {
    const attempts = [];
    for (;;) {
      const item = await frank.events.take((i) => i.kind === "reconnecting" || i.kind === "close", { timeout: STEP });
      if (item.kind === "close") {
        assert.ok(item.error instanceof ReconnectFailed, String(item.error));
        assert.equal(item.error.attempts, 3);
        break;
      }
      attempts.push(item.attempt);
    }
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.equal(frank.client.state, "closed");
  } finally {
    await control("main restore");
  }
}));

test("an expired session logs in afresh, joins its rooms again and replays what it can", { skip: needsServer }, cleanly(async () => {
  const room = unique("attic");
  const carol = await loggedIn(SHORT, unique("carol"));
  const dave = await loggedIn(SHORT_PROXY, unique("dave"), { autoReconnect: true, reconnectMaxDelay: 200 });
  assert.equal(dave.client.idleTimeout, 1);
  await leaveLobby(dave); // a fresh login joins the lobby: the client must leave it again
  await join(dave.client, dave.events, room);
  await join(carol.client, carol.events, room);
  const heard = dave.client.events();
  await say(dave.client, dave.events, room, "before");
  const oldToken = dave.client.token;
  const lobby = [];
  dave.client.on("event", (item) => item.room === "lobby" && lobby.push(item.event.type));

  await control("short cut_now");
  // Past the 0.5 s resume grace the session ends: dave leaves for real.
  await carol.events.take(isEvent(room, "leave", dave.client.user), { timeout: STEP });
  await say(carol.client, carol.events, room, "while gone");
  await control("short restore");

  const back = await dave.events.take(isKind("reconnect"), { timeout: STEP });
  assert.equal(back.resumed, false);
  assert.deepEqual(back.rejoined, [room]);
  assert.deepEqual(back.gaps, []);
  assert.notEqual(dave.client.token, oldToken);
  await carol.events.take(isEvent(room, "join", dave.client.user), { timeout: STEP });
  await say(carol.client, carol.events, room, "after");

  const items = await until(heard, room, "after");
  assert.deepEqual(msgData(items), ["before", "while gone", "after"], "nothing twice, nothing lost");
  const replayed = items.filter((i) => i.kind === "event" && i.replayed).map((i) => `${i.event.type}:${i.event.data}`);
  assert.deepEqual(replayed, ["away:", "leave:", "msg:while gone"]);
  assert.deepEqual(dave.client.joinedRooms, [room]);
  assert.deepEqual(lobby, [], "the lobby the fresh login joined, left again at once, shows nothing");
  await Promise.all([carol.client.close(), dave.client.close()]);
}));

test("a resume whose missed events are gone reports the gap and resynchronizes", { skip: needsServer }, cleanly(async () => {
  const room = unique("tiny");
  const hank = await loggedIn(DOOMED, unique("hank"));
  const gina = await loggedIn(DOOMED_PROXY, unique("gina"), { autoReconnect: true, reconnectMaxDelay: 200 });
  await leaveLobby(gina);
  await join(gina.client, gina.events, room);
  await join(hank.client, hank.events, room);
  const heard = gina.client.events();
  await say(hank.client, hank.events, room, "a1");
  await gina.events.take(isMsg(room, "a1"), { timeout: STEP });

  await control("doomed cut_now");
  await hank.events.take(isEvent(room, "away", gina.client.user), { timeout: STEP });
  // The room keeps 3 events: the away and b1 are gone by the time gina is back.
  for (const text of ["b1", "b2", "b3", "b4"]) await say(hank.client, hank.events, room, text);
  await control("doomed restore");

  const back = await gina.events.take(isKind("reconnect"), { timeout: STEP });
  assert.equal(back.resumed, true);
  assert.deepEqual(back.gaps, [room]);
  await say(hank.client, hank.events, room, "c1");
  const items = await until(heard, room, "c1");
  assert.deepEqual(msgData(items), ["a1", "b2", "b3", "b4", "c1"]);
  await Promise.all([gina.client.close(), hank.client.close()]);
}));

test("a session resumed elsewhere closes the old client with 409, and it does not reconnect", { skip: needsServer }, cleanly(async () => {
  const room = unique("hall");
  const erin = await loggedIn(ADDR, unique("erin"), { autoReconnect: true });
  await join(erin.client, erin.events, room);
  await say(erin.client, erin.events, room, "mine");

  const thief = tracked(new RoomcastClient(`tcp://${ADDR}`));
  await thief.connect();
  const stolen = thief.events();
  const reply = await thief.resume(erin.client.token, erin.client.lastSeqs);
  assert.equal(reply.code, 202);
  assert.equal(reply.detail.resumed, true);
  assert.equal(thief.user, erin.client.user);
  assert.match(thief.token, /^[0-9a-f]{32}$/);

  const end = await erin.events.take((i) => i.kind === "close" || i.kind === "reconnecting", { timeout: STEP });
  assert.equal(end.kind, "close");
  assert.ok(end.error instanceof Conflict, String(end.error));
  assert.equal(end.code, 409);
  assert.equal(erin.client.state, "closed");

  // Nothing was missed, so nothing is replayed; the session goes on on the new connection.
  thief.msg(room, "still mine");
  const echo = await stolen.take(isMsg(room, "still mine"), { timeout: STEP });
  assert.equal(echo.event.user, erin.client.user);
  assert.equal(echo.replayed, false);
  await thief.logout();
}));

test("a frame over the server's limit ends the client with 413, without a reconnect", { skip: needsServer }, cleanly(async () => {
  const big = await loggedIn(ADDR, unique("big"), { autoReconnect: true });
  big.client.msg("lobby", "x".repeat(70_000));
  const end = await big.events.take((i) => i.kind === "close" || i.kind === "reconnecting", { timeout: STEP });
  assert.equal(end.kind, "close");
  assert.ok(end.error instanceof TooLarge, String(end.error));
  assert.equal(end.error.detail.max_frame, 65536);
}));

test("keep-alive pings hold an idle connection open; without them the server closes it (408)", { skip: needsServer }, cleanly(async () => {
  const keeper = await loggedIn(SHORT, unique("keeper"));
  const sleeper = await loggedIn(SHORT, unique("sleeper"), { keepAlive: false });
  const keeperItems = keeper.client.events();
  const end = await sleeper.events.take(isKind("close"), { timeout: STEP });
  assert.ok(end.error instanceof TimedOut, String(end.error));
  assert.equal(end.code, 408);
  // The keeper logged in first and has sent nothing of its own since: only its pings.
  await sleep(700);
  assert.equal(keeper.client.state, "open");
  assert.equal((await keeper.client.ping()).msg, "pong");
  await keeper.client.close();
  const kinds = [];
  for await (const item of keeperItems) kinds.push(item.kind);
  assert.ok(!kinds.includes("system") && !kinds.includes("problem"), `pongs of keep-alive pings are not items: ${kinds}`);
}));

test("a server shutting down ends the client with 503, without a reconnect", { skip: needsServer }, cleanly(async () => {
  const last = await loggedIn(DOOMED, unique("last"), { autoReconnect: true });
  await control("doomed shutdown");
  const end = await last.events.take((i) => i.kind === "close" || i.kind === "reconnecting", { timeout: STEP });
  assert.equal(end.kind, "close");
  assert.ok(end.error instanceof Unavailable, String(end.error));
  assert.equal(end.error.msg, "Server shutting down.");
}));
