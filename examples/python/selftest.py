#!/usr/bin/env python3
"""Checks roomcast_client.py against a running server; exits non-zero on the first failure.

    python3 examples/python/selftest.py --port 42069

Each check uses fresh user and room names, so a shared server is fine. tests/python_clients.rs
runs this against an embedded server with its default settings (max_frame 64 KiB, fps 20).
"""

import argparse
import os
import socket
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from roomcast_client import (  # noqa: E402  (the path above makes the module importable)
    DEFAULT_HOST,
    DEFAULT_PORT,
    BadRequest,
    Client,
    Conflict,
    ConnectionClosed,
    Invalid,
    NotInRoom,
    NotLoggedIn,
    RoomcastError,
    TooLarge,
    encode_frame,
    read_frame,
    recv_exact,
)

TIMEOUT = 5.0
TAG = f"{os.getpid() % 10000}"
CHECKS = []


def check(function):
    """Registers a check; they run in the order they are defined."""
    CHECKS.append(function)
    return function


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_raises(error_type, action):
    """Runs ``action`` and returns the ``error_type`` it raises; fails if it raises nothing."""
    try:
        action()
    except error_type as err:
        return err
    raise AssertionError(f"expected {error_type.__name__}")


def connect(args, name):
    """A logged-in client whose lobby events have been read."""
    client = Client(args.host, args.port)
    client.login(name, "1234")
    client.wait_for(lambda e: e["room"] == "lobby" and e["type"] == "list", TIMEOUT)
    return client


def is_event(kind, user=None, room=None):
    def match(event):
        return (
            event["type"] == kind
            and (user is None or event["user"] == user)
            and (room is None or event["room"] == room)
        )

    return match


@check
def login_joins_the_lobby(args):
    name = f"ann{TAG}"
    with Client(args.host, args.port) as client:
        reply = client.login(name, "1234")
        expect(reply["code"] == 202, f"login code {reply['code']}")
        expect(reply["msg"] == "Access granted.", f"login msg {reply['msg']!r}")
        expect(reply["detail"] == {"user": name}, f"login detail {reply['detail']}")
        join = client.wait_for(is_event("join", name, "lobby"), TIMEOUT)
        expect(join["history"] is False, "own join is live, not history")
        members = client.wait_for(is_event("list", room="lobby"), TIMEOUT)
        expect(name in members["data"], f"{name} not in lobby list {members['data']}")
        pong = client.ping()
        expect((pong["code"], pong["msg"]) == (200, "pong"), f"ping reply {pong}")


@check
def login_errors_are_typed(args):
    name = f"bob{TAG}"
    with connect(args, name) as first, Client(args.host, args.port) as second:
        err = expect_raises(Conflict, lambda: first.login("other", "x"))
        expect(err.code == 409, f"second login code {err.code}")
        err = expect_raises(Conflict, lambda: second.login(name.upper(), "x"))
        expect(err.detail.get("user") == name.upper(), f"409 detail {err.detail}")
        err = expect_raises(Invalid, lambda: second.login("no spaces allowed", "x"))
        expect(err.code == 422 and "user name" in err.msg, f"422 {err.code} {err.msg}")
        expect(isinstance(err, RoomcastError), "typed errors share RoomcastError")


@check
def room_message_before_login_is_401(args):
    with Client(args.host, args.port) as client:
        client.join("anywhere")
        err = expect_raises(NotLoggedIn, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(err.detail == {"room": "anywhere", "type": "join"}, f"401 detail {err.detail}")


@check
def msg_echoes_with_data_intact(args):
    name, room = f"cat{TAG}", f"echo-{TAG}"
    data = {
        "text": 'héllo ☕ "quoted"\n',
        "list": [1, 2.5, -3e-7, None, True, False, "", {}],
        "nested": {"a": {"b": [[]]}},
        "big": 12345678901234,
    }
    with connect(args, name) as client:
        client.join(room)
        client.wait_for(is_event("list", room=room), TIMEOUT)
        client.msg(room, data)
        client.msg(room, "plain string")
        client.msg(room, None)
        got = [client.wait_for(is_event("msg", name, room), TIMEOUT) for _ in range(3)]
        expect(got[0]["data"] == data, f"msg data changed: {got[0]['data']!r}")
        expect(got[1]["data"] == "plain string", f"second msg {got[1]['data']!r}")
        expect(got[2]["data"] is None, f"null msg {got[2]['data']!r}")
        expect(all(isinstance(e["time"], float) for e in got), "events carry a float time")


@check
def unknown_room_is_a_typed_404_while_iterating(args):
    with connect(args, f"dan{TAG}") as client:
        client.msg(f"nowhere-{TAG}", "hi?")
        err = expect_raises(NotInRoom, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(err.code == 404, f"code {err.code}")
        expect(err.detail == {"room": f"nowhere-{TAG}", "type": "msg"}, f"detail {err.detail}")
        # The generator ended with the error; the connection goes on.
        expect(client.ping()["msg"] == "pong", "ping after an error")


@check
def errors_of_room_messages_do_not_fail_a_ping(args):
    with connect(args, f"eve{TAG}") as client:
        client.leave(f"nowhere-{TAG}")
        expect(client.ping()["code"] == 200, "ping answered despite an earlier 404")
        expect_raises(NotInRoom, lambda: client.wait_for(lambda e: False, TIMEOUT))


@check
def transform_tick_carries_the_pose(args):
    room = f"vr-{TAG}"
    a_name, b_name = f"fay{TAG}", f"gus{TAG}"
    with connect(args, a_name) as a, connect(args, b_name) as b:
        a.join(room)
        b.join(room)
        b.wait_for(is_event("join", a_name, room), TIMEOUT)
        a.transform(room, (1, 2.5, -3), (0, 0.7071, 0, 0.7071))
        event = b.wait_for(is_event("transform", a_name, room), TIMEOUT)
        expected = {
            "pos": {"x": 1.0, "y": 2.5, "z": -3.0},
            "rot": {"x": 0.0, "y": 0.7071, "z": 0.0, "w": 0.7071},
        }
        expect(event["data"] == expected, f"pose {event['data']}")
        # Euler rotation from dicts, no w.
        a.transform(room, {"x": 0, "y": 1, "z": 0}, {"x": 10, "y": 20, "z": 30})
        event = b.wait_for(is_event("transform", a_name, room), TIMEOUT)
        expect(event["data"]["rot"] == {"x": 10.0, "y": 20.0, "z": 30.0}, f"{event['data']}")
        # A late joiner gets a snapshot of every pose at its first tick.
        with connect(args, f"hal{TAG}") as late:
            late.join(room)
            event = late.wait_for(is_event("transform", a_name, room), TIMEOUT)
            expect(event["data"]["pos"] == {"x": 0.0, "y": 1.0, "z": 0.0}, "snapshot pose")
        expect_raises(ValueError, lambda: a.transform(room, (0, 0, float("nan")), (0, 0, 0)))
        a.send({"room": room, "type": "transform", "data": {"pos": {"x": 0}, "rot": {}}})
        err = expect_raises(Invalid, lambda: a.wait_for(lambda e: False, TIMEOUT))
        expect("data.pos.y" in err.msg, f"422 names the field: {err.msg}")


@check
def joiners_get_history(args):
    room = f"hist-{TAG}"
    with connect(args, f"ivy{TAG}") as a, connect(args, f"jon{TAG}") as b:
        a.join(room)
        a.msg(room, "before you came")
        a.wait_for(is_event("msg", room=room), TIMEOUT)
        b.join(room)
        old = b.wait_for(is_event("msg", room=room), TIMEOUT)
        expect(old["history"] is True, f"history flag {old}")
        expect(old["data"] == "before you came", f"history data {old['data']!r}")
        live = b.wait_for(is_event("join", f"jon{TAG}", room), TIMEOUT)
        expect(live["history"] is False, "own join is live")
        rooms = {r["room"]: r["users"] for r in a.rooms()}
        expect(rooms.get(room) == 2, f"rooms() says {rooms}")


class CountingSocket:
    """A socket that counts its recv() calls."""

    def __init__(self, sock):
        self.sock = sock
        self.recvs = 0

    def recv(self, n):
        self.recvs += 1
        return self.sock.recv(n)

    def __getattr__(self, name):
        return getattr(self.sock, name)


@check
def big_frames_and_many_small_ones(args):
    room = f"big-{TAG}"
    # A small receive buffer makes the server's 62 KB frame arrive in many pieces for sure.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((args.host, args.port))
    counting = CountingSocket(sock)
    with Client.from_socket(counting) as client:
        client.login(f"kim{TAG}", "1234")
        client.join(room)
        client.wait_for(is_event("list", room=room), TIMEOUT)
        big = "x" * 60_000 + "é" * 1000  # 62 000 bytes of UTF-8, under max_frame (64 KiB)
        client.msg(room, big)
        before = counting.recvs
        for n in range(50):  # many frames: several arrive in one recv()
            client.msg(room, n)
        event = client.wait_for(is_event("msg", room=room), TIMEOUT)
        expect(event["data"] == big, f"big msg of {len(event['data'])} chars came back changed")
        expect(counting.recvs - before > 2, f"big frame took {counting.recvs - before} recv()s")
        numbers = [client.wait_for(is_event("msg", room=room), TIMEOUT)["data"] for _ in range(50)]
        expect(numbers == list(range(50)), f"small msgs out of order: {numbers}")


@check
def frames_split_into_tiny_pieces_are_reassembled(args):
    """The server is not needed: a socketpair fed a few bytes at a time, as a slow network
    would, must give back whole frames to both readers."""
    frames = [{"info": "user", "room": "r", "payload": [{"n": i, "s": "é" * i}]} for i in range(20)]
    wire = b"".join(encode_frame(f) for f in frames)

    def trickle(sock):
        for start in range(0, len(wire), 3):
            sock.sendall(wire[start : start + 3])
            if start % 30 == 0:
                time.sleep(0.001)  # Let the reader see the partial frame.
        sock.shutdown(socket.SHUT_WR)

    left, right = socket.socketpair()
    writer = threading.Thread(target=trickle, args=(left,))
    writer.start()
    got = [read_frame(right) for _ in frames]
    expect(got == frames, "read_frame lost or mangled a split frame")
    expect_raises(ConnectionClosed, lambda: recv_exact(right, 1))
    writer.join()
    left.close()
    right.close()

    left, right = socket.socketpair()
    writer = threading.Thread(target=trickle, args=(left,))
    writer.start()
    client = Client.from_socket(right)
    events = []
    try:
        for event in client.events(timeout=TIMEOUT):
            events.append(event)
    except ConnectionClosed:
        pass
    writer.join()
    left.close()
    client.close(linger=0)
    expect([e["n"] for e in events] == list(range(20)), f"events {events}")
    expect(all(e["room"] == "r" and e["history"] is False for e in events), "room and history")


@check
def timeout_keeps_a_partial_frame(args):
    left, right = socket.socketpair()
    client = Client.from_socket(right)
    frame = encode_frame({"info": "system", "response": {"code": 200}})
    left.sendall(frame[:5])
    expect_raises(TimeoutError, lambda: client.recv(timeout=0.05))
    left.sendall(frame[5:])
    expect(client.recv(timeout=TIMEOUT)["response"]["code"] == 200, "frame after a timeout")
    left.close()
    client.close(linger=0)


@check
def oversized_frame_is_413_then_closed(args):
    with connect(args, f"lee{TAG}") as client:
        client.send({"room": "lobby", "type": "msg", "data": "y" * 70_000})
        err = expect_raises(TooLarge, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(err.detail.get("max_frame") == 65536, f"413 detail {err.detail}")
        expect_raises(ConnectionClosed, lambda: client.recv(TIMEOUT))


@check
def zero_length_frame_is_400_then_closed(args):
    with connect(args, f"max{TAG}") as client:
        client.sock.sendall(struct.pack("!I", 0))
        expect_raises(BadRequest, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect_raises(ConnectionClosed, lambda: client.recv(TIMEOUT))


@check
def game_state_arrives_as_an_event(args):
    room = f"ttt-{TAG}"
    with connect(args, f"ned{TAG}") as client:
        client.join(room)
        client.game(room, {"start": "tictactoe"})
        event = client.wait_for(is_event("game", room=room), TIMEOUT)
        expect(event["data"]["game"] == "tictactoe", f"game state {event['data']}")
        expect(event["data"]["status"] == "waiting", f"status {event['data']['status']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    for function in CHECKS:
        name = function.__name__
        start = time.monotonic()
        try:
            function(args)
        except Exception:  # noqa: BLE001  (any failure fails the run, with its traceback)
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
            return 1
        print(f"ok   {name} ({(time.monotonic() - start) * 1000:.0f} ms)", flush=True)
    print(f"selftest: all {len(CHECKS)} checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
