#!/usr/bin/env python3
"""A simulated VR headset: streams a pose moving on a circle, with its two hands, and prints
everyone else's (protocol.md §11: tracked parts).

    python3 examples/python/headset_sim.py --user quest1 --room vr
    python3 examples/python/headset_sim.py --user quest2 --room vr --radius 2 --no-hands

It sends at the headset's rate (90 Hz by default); the server coalesces and sends the room the
latest pose of each user once per tick (its --fps, 20 by default), so the lines printed for
the other headsets come at the server's rate, not at theirs.

One thread does both: between two sends it waits for server frames with a timeout, so the
send schedule is a fixed-rate deadline that does not drift. The poses keep the connection
alive (any frame sent counts); should the headset stop sending, the client's keep-alive pings.
A lost connection is resumed on its own (--no-reconnect turns that off); the sim says so and
streams on.
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from roomcast_client import (  # noqa: E402  (the path above makes the module importable)
    DEFAULT_HOST,
    DEFAULT_PORT,
    Client,
    ConnectionClosed,
    RoomcastError,
)


def say(text):
    print(text, flush=True)


def pose_at(t, radius, period, height):
    """Position on a horizontal circle, facing along it: yaw as a quaternion about +y."""
    angle = 2 * math.pi * t / period
    pos = (radius * math.cos(angle), height, radius * math.sin(angle))
    yaw = -angle  # Facing the direction of travel (counter-clockwise seen from above).
    rot = (0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2))
    return pos, rot


def hands_at(pos, rot):
    """Two hands held in front of the head: 0.2 m to each side, 0.4 m below, 0.3 m ahead."""
    x, y, z = pos
    return {
        "left_hand": ((x - 0.2, y - 0.4, z + 0.3), rot),
        "right_hand": ((x + 0.2, y - 0.4, z + 0.3), rot),
    }


def format_pose(event):
    pos, rot = event["data"]["pos"], event["data"]["rot"]
    angles = ", ".join(f"{rot[k]:+.3f}" for k in ("x", "y", "z", "w") if k in rot)
    parts = "".join(
        f" {name}=({part['pos']['x']:+.3f}, {part['pos']['y']:+.3f}, {part['pos']['z']:+.3f})"
        for name, part in sorted(event["data"].get("parts", {}).items())
    )
    return (
        f"{time.strftime('%H:%M:%S')} #{event['room']} {event['user']} "
        f"pos=({pos['x']:+.3f}, {pos['y']:+.3f}, {pos['z']:+.3f}) rot=({angles}){parts}"
    )


class Stats:
    def __init__(self):
        self.sent = 0
        self.received = 0
        self.users = set()


def handle(event, me, stats):
    """Prints what others do; our own pose comes back too and is only counted."""
    if event["type"] == "transform":
        if event["user"] != me:
            stats.received += 1
            stats.users.add(event["user"])
            say(format_pose(event))
    elif event["type"] in ("join", "leave") and not event["history"] and event["user"] != me:
        verb = "joined" if event["type"] == "join" else "left"
        say(f"{time.strftime('%H:%M:%S')} #{event['room']} * {event['user']} {verb}")
    elif event["type"] == "reconnect":
        how = "resumed" if event["resumed"] else "logged in again"
        say(f"{time.strftime('%H:%M:%S')} * reconnected ({how}) after {event['downtime']:.1f} s")


def run(client, args, stats):
    period = 1.0 / args.hz
    start = time.monotonic()
    stop = start + args.seconds if args.seconds > 0 else math.inf
    next_send = start
    while True:
        now = time.monotonic()
        if now >= stop:
            return
        if now >= next_send:
            pos, rot = pose_at(now - start, args.radius, args.period, args.height)
            parts = None if args.no_hands else hands_at(pos, rot)
            client.transform(args.room, pos, rot, parts)
            stats.sent += 1
            next_send += period
            if next_send < now:  # Fell behind (a pause, a slow machine): skip, do not burst.
                next_send = now + period
            continue
        try:
            for event in client.events(deadline=min(next_send, stop)):
                handle(event, client.user, stats)
        except RoomcastError as err:
            say(f"! {err.code} {err.msg}")


def main():
    parser = argparse.ArgumentParser(description="A simulated VR headset for roomcast.")
    parser.add_argument("--user", default=f"headset-{os.getpid()}")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--room", default="vr")
    parser.add_argument("--hz", type=float, default=90.0, help="poses sent per second")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this; 0: never")
    parser.add_argument("--radius", type=float, default=1.0, help="circle radius, metres")
    parser.add_argument("--period", type=float, default=4.0, help="seconds per lap")
    parser.add_argument("--height", type=float, default=1.6, help="eye height, metres")
    parser.add_argument(
        "--no-hands", action="store_true", help="send the head only, without the two hands"
    )
    parser.add_argument(
        "--no-reconnect",
        action="store_true",
        help="do not reconnect and resume when the connection is lost",
    )
    args = parser.parse_args()
    if not args.hz > 0:
        parser.error("--hz must be above 0")

    try:
        client = Client(args.host, args.port, auto_reconnect=not args.no_reconnect)
    except OSError as err:
        print(f"headset_sim.py: cannot connect to {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    try:
        client.login(args.user, "")
    except (RoomcastError, OSError) as err:
        print(f"headset_sim.py: login failed: {err}", file=sys.stderr)
        client.close(linger=0)
        return 1

    stats = Stats()
    try:
        # Leaving the with block logs out: the other headsets see us leave at once.
        with client:
            client.join(args.room)
            say(f"{client.user}: streaming at {args.hz:g} Hz to #{args.room}; Ctrl-C stops")
            started = time.monotonic()
            try:
                run(client, args, stats)
            except KeyboardInterrupt:
                pass
            elapsed = time.monotonic() - started
    except RoomcastError as err:
        print(f"headset_sim.py: refused: {err.code} {err.msg}", file=sys.stderr)
        return 1
    except ConnectionClosed as err:
        print(f"headset_sim.py: connection lost: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"headset_sim.py: cannot talk to {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    rate = stats.sent / elapsed if elapsed > 0 else 0.0
    others = ", ".join(sorted(stats.users)) or "nobody"
    say(
        f"sent {stats.sent} poses in {elapsed:.2f} s ({rate:.1f} Hz); "
        f"received {stats.received} poses of {len(stats.users)} others ({others})"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
