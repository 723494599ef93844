#!/usr/bin/env python3
"""Sends keyboard and joystick input to a roomcast room, as "joystick over sockets" tutorials
do, but framed: each input is one length-prefixed msg, so the receiver never sees half a press
or two presses glued together.

    python3 examples/python/input_sender.py --room arcade            # keys as you press them
    printf 'w\\nbutton 3\\naxis 0 -0.5\\n' | python3 examples/python/input_sender.py

What is sent (the ``data`` of a ``msg`` in the room):

    {"input": "key", "key": "w", "pressed": true}      then the same with "pressed": false
    {"input": "button", "button": 3, "pressed": true}  joystick (pygame) or "button N [up|down]"
    {"input": "axes", "joystick": 0, "values": [-0.5, 0.0]}   at most 20 per second
    {"input": "axis", "axis": 0, "value": -0.5}        from the line "axis N VALUE"
    {"input": "hat", "joystick": 0, "hat": 0, "value": [1, 0]}

Sources:
- stdin a terminal: raw keys, read one at a time without Enter (termios); q or Ctrl-D quits.
- stdin a pipe or file: one input per line; end of input quits.
- pygame installed and a joystick plugged in: its buttons, axes and hats. Without pygame the
  script says joystick support is off and carries on.

Stops at end of input, after --seconds, or on Ctrl-C, and logs out. While no input comes,
the client's keep-alive pings, so the server's idle timeout never closes the connection.
"""

import argparse
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from roomcast_client import (  # noqa: E402  (the path above makes the module importable)
    DEFAULT_HOST,
    DEFAULT_PORT,
    Client,
    ConnectionClosed,
    RoomcastError,
)

#: Axis updates are sent at most this often per joystick: the server rate-limits msgs
#: (50 per second by default) and a stick moves continuously.
AXES_INTERVAL = 0.05
#: Smaller axis changes are noise.
AXIS_EPSILON = 0.02


def say(text):
    print(text, flush=True)


# --- inputs -------------------------------------------------------------------------------


def parse_line(line):
    """The msgs for one line of input: ``button N [up|down]``, ``axis N VALUE``, or a key
    (the line's text) pressed and released."""
    words = line.split()
    if len(words) in (2, 3) and words[0] == "button" and words[1].isdigit():
        button = int(words[1])
        state = words[2] if len(words) == 3 else "tap"
        if state in ("down", "tap"):
            yield {"input": "button", "button": button, "pressed": True}
        if state in ("up", "tap"):
            yield {"input": "button", "button": button, "pressed": False}
        return
    if len(words) == 3 and words[0] == "axis" and words[1].isdigit():
        try:
            value = max(-1.0, min(1.0, float(words[2])))
        except ValueError:
            pass
        else:
            yield {"input": "axis", "axis": int(words[1]), "value": value}
            return
    yield {"input": "key", "key": line, "pressed": True}
    yield {"input": "key", "key": line, "pressed": False}


def read_lines(inputs):
    """Thread: stdin lines into ``inputs``; None at the end.

    Reads the descriptor, not ``sys.stdin``: a daemon thread blocked inside ``sys.stdin``
    holds its lock, and Python can abort at exit waiting for it."""
    fd = sys.stdin.fileno()
    rest = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        *complete, rest = (rest + chunk).split(b"\n")
        for line in complete:
            line = line.decode("utf-8", "replace").strip()
            if line:
                inputs.put(line)
    if rest.strip():
        inputs.put(rest.decode("utf-8", "replace").strip())
    inputs.put(None)


def read_keys(inputs):
    """Thread: single key presses from a terminal in cbreak mode; None on q or Ctrl-D.

    A terminal reports key presses, not releases, so each key is sent as a tap."""
    fd = sys.stdin.fileno()
    while True:
        data = os.read(fd, 32)
        if not data or data in (b"q", b"\x04"):
            break
        if data.startswith(b"\x1b"):
            key = {b"\x1b[A": "up", b"\x1b[B": "down", b"\x1b[C": "right", b"\x1b[D": "left"}
            inputs.put(key.get(data, "escape"))
            continue
        for char in data.decode("utf-8", "replace"):
            inputs.put({"\n": "enter", "\r": "enter", " ": "space"}.get(char, char))
    inputs.put(None)


class Terminal:
    """Puts a terminal in cbreak mode (keys arrive without Enter, Ctrl-C still works) and
    restores it on the way out."""

    def __init__(self, fd):
        import termios
        import tty

        self.fd = fd
        self.termios = termios
        self.saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

    def restore(self):
        self.termios.tcsetattr(self.fd, self.termios.TCSADRAIN, self.saved)


class Joysticks:
    """Joystick buttons, axes and hats through pygame, when it is installed."""

    def __init__(self):
        self.pygame = None
        self.sticks = []
        self.axes = {}  # joystick index -> (last sent values, time sent)
        try:
            os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
            import pygame
        except ImportError:
            say("pygame is not installed: joystick support is off (keyboard only)")
            return
        # Joystick events need pygame's event queue, which needs a (headless) display.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        pygame.display.init()
        pygame.joystick.init()
        self.pygame = pygame
        self.sticks = [pygame.joystick.Joystick(i) for i in range(pygame.joystick.get_count())]
        for stick in self.sticks:
            stick.init()
            say(f"joystick {stick.get_id()}: {stick.get_name()}")
        if not self.sticks:
            say("pygame found no joystick (keyboard only)")

    @property
    def active(self):
        return bool(self.sticks)

    def poll(self):
        """The msgs for what happened since the last call."""
        pygame = self.pygame
        msgs = []
        for event in pygame.event.get():
            if event.type in (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP):
                msgs.append(
                    {
                        "input": "button",
                        "joystick": event.joy,
                        "button": event.button,
                        "pressed": event.type == pygame.JOYBUTTONDOWN,
                    }
                )
            elif event.type == pygame.JOYHATMOTION:
                hat = {"input": "hat", "joystick": event.joy, "hat": event.hat}
                msgs.append(dict(hat, value=list(event.value)))
        now = time.monotonic()
        for index, stick in enumerate(self.sticks):
            values = [round(stick.get_axis(a), 3) for a in range(stick.get_numaxes())]
            last, when = self.axes.get(index, (None, 0.0))
            moved = last is None or any(abs(a - b) > AXIS_EPSILON for a, b in zip(values, last))
            if values and moved and now - when >= AXES_INTERVAL:
                self.axes[index] = (values, now)
                msgs.append({"input": "axes", "joystick": index, "values": values})
        return msgs

    def close(self):
        if self.pygame is not None:
            self.pygame.quit()


# --- the loop -----------------------------------------------------------------------------


def report_server(client, counts, done):
    """Thread: counts our msgs coming back and prints errors (a 429 means we sent too fast).
    When the connection ends before we are ``done``, says so."""
    while True:
        try:
            for event in client.events():
                if event["type"] == "msg" and event["user"] == client.user:
                    counts["echoed"] += 1
        except RoomcastError as err:
            say(f"! {err.code} {err.msg}")
        except (ConnectionClosed, OSError) as err:
            if not done.is_set():
                say(f"! connection lost: {err}")
            return


def main():
    parser = argparse.ArgumentParser(description="Send keyboard and joystick input to a room.")
    parser.add_argument("--user", default=f"input-{os.getpid()}")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this; 0: never")
    parser.add_argument("--no-joystick", action="store_true", help="do not load pygame")
    parser.add_argument("--quiet", action="store_true", help="do not print each input")
    args = parser.parse_args()

    try:
        client = Client(args.host, args.port)
    except OSError as err:
        print(f"input_sender.py: cannot connect to {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    try:
        client.login(args.user, "")
    except (RoomcastError, OSError) as err:
        print(f"input_sender.py: login failed: {err}", file=sys.stderr)
        client.close(linger=0)
        return 1
    counts = {"sent": 0, "echoed": 0}
    done = threading.Event()
    server_reader = threading.Thread(
        target=report_server, args=(client, counts, done), daemon=True
    )
    # From here on, Ctrl-C ends the run like the end of input does: with a logout.
    try:
        send_inputs(client, args, counts, server_reader)
    except KeyboardInterrupt:
        pass
    except OSError as err:
        say(f"! cannot send: {err}")
    # Log out: the server handles every msg sent, echoes them, answers, then closes; the
    # reader thread counts the echoes and ends there.
    done.set()
    try:
        client.logout(wait=False)
    except OSError:
        pass  # Already gone.
    if server_reader.ident is not None:  # Started.
        server_reader.join(timeout=2.0)
    client.close(linger=0, logout=False)
    say(f"sent {counts['sent']} inputs; {counts['echoed']} came back from the server")
    return 0


def send_inputs(client, args, counts, server_reader):
    """Joins the room, then sends inputs until the end of input or ``--seconds``."""
    if args.room != "lobby":
        client.join(args.room)
    if args.no_joystick:
        joysticks = None
        say("joystick support is off (--no-joystick)")
    else:
        joysticks = Joysticks()
    inputs = queue.Queue()
    terminal = None
    if sys.stdin.isatty():
        try:
            terminal = Terminal(sys.stdin.fileno())
        except (ImportError, OSError):
            pass  # No termios (Windows): fall back to lines.
    reader = read_keys if terminal is not None else read_lines
    threading.Thread(target=reader, args=(inputs,), daemon=True).start()
    server_reader.start()
    how = "press keys (q quits)" if terminal is not None else "one input per line"
    say(f"{client.user} -> #{args.room}: {how}")

    deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
    polling = joysticks is not None and joysticks.active

    def send(msg):
        client.msg(args.room, msg)
        counts["sent"] += 1
        if not args.quiet:
            say(f"sent {msg}")

    try:
        while deadline is None or time.monotonic() < deadline:
            wait = 0.01 if polling else 0.2
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            try:
                item = inputs.get(timeout=wait)
            except queue.Empty:
                item = ""
            if item is None:
                break
            if item and terminal is not None:
                send({"input": "key", "key": item, "pressed": True})
                send({"input": "key", "key": item, "pressed": False})
            elif item:
                for msg in parse_line(item):
                    send(msg)
            if polling:
                for msg in joysticks.poll():
                    send(msg)
    finally:
        if terminal is not None:
            terminal.restore()
        if joysticks is not None:
            joysticks.close()

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
