"""A small roomcast client for Python: standard library only.

roomcast speaks length-prefixed JSON over raw TCP. Every frame, both ways, is a 4-byte
big-endian length N followed by N bytes of UTF-8 JSON (one object):

    sock.sendall(struct.pack("!I", len(body)) + body)

Reading is the part socket tutorials get wrong: one ``send`` on one side is not one ``recv``
on the other. TCP is a byte stream, so a ``recv`` may return half a frame, or one frame and
the start of the next. A reader must keep reading until it has the 4 header bytes, then until
it has the whole body (see ``recv_exact`` and ``Client.recv``).

Quick start::

    from roomcast_client import Client, RoomcastError

    with Client("127.0.0.1", 42069) as client:
        client.login("Tibi", "1234")          # 202 "Access granted."; you are in "lobby"
        client.join("vr")
        client.msg("vr", {"text": "hello"})
        client.transform("vr", (0, 1.6, 0), (0, 0, 0, 1))
        for event in client.events(timeout=5):  # stops after 5 s without a frame
            print(event["room"], event["user"], event["type"], event["data"])

Errors. The server answers a bad request with ``{"info": "error", "response": {...}}``;
this module turns it into a ``RoomcastError`` subclass chosen by code (``NotInRoom`` for 404,
``RateLimited`` for 429, ...). ``login``, ``ping`` and ``rooms`` wait for their answer and
raise it. Room messages (``join``, ``msg``, ...) get no success reply, so their errors
arrive later, in order, and are RAISED by ``events()`` / ``wait_for()`` when reached (the
generator then ends; call ``events()`` again to go on, nothing buffered is lost). ``recv()``
returns every frame as it is and raises nothing for error frames.

Threads. One thread may read (``recv``, ``events``, ``login``, ...) while others send: sends
are serialized by a lock. ``shutdown()`` from any thread makes the reader see the end of the
stream once the server has answered everything sent before it.
"""

import collections
import json
import select
import socket
import struct
import sys
import threading
import time

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_FRAME",
    "Client",
    "RoomcastError",
    "BadRequest",
    "NotLoggedIn",
    "Forbidden",
    "NotInRoom",
    "TimedOut",
    "Conflict",
    "TooLarge",
    "Invalid",
    "RateLimited",
    "Unavailable",
    "ConnectionClosed",
    "ProtocolError",
    "error_from_response",
    "encode_frame",
    "recv_exact",
    "read_frame",
    "vec3",
    "rotation",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 42069
#: Largest frame the server may send (16 MiB); anything longer means the stream is broken.
MAX_FRAME = 16 * 1024 * 1024

_HEADER = struct.Struct("!I")
_CHUNK = 64 * 1024


# --- errors -----------------------------------------------------------------------------


class RoomcastError(Exception):
    """An error reply from the server: ``code`` (400..599), ``msg`` and ``detail`` (a dict,
    e.g. ``{"room": R, "type": K}`` for room messages)."""

    code = None

    def __init__(self, code, msg, detail=None):
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.detail = detail if detail is not None else {}


class BadRequest(RoomcastError):
    """400: not JSON, missing or ill-typed field, unknown command or type."""

    code = 400


class NotLoggedIn(RoomcastError):
    """401: a room message before login."""

    code = 401


class Forbidden(RoomcastError):
    """403: wrong password (reserved until there are accounts)."""

    code = 403


class NotInRoom(RoomcastError):
    """404: leave, list, msg, transform or game for a room you are not in."""

    code = 404


class TimedOut(RoomcastError):
    """408: not logged in in time, or silent past the idle timeout; the server closes."""

    code = 408


class Conflict(RoomcastError):
    """409: already logged in, user name taken, room already joined, game running."""

    code = 409


class TooLarge(RoomcastError):
    """413: a frame over the server's max_frame; the server closes."""

    code = 413


class Invalid(RoomcastError):
    """422: well-formed but invalid: a name, a pose, a game move, or a limit reached."""

    code = 422


class RateLimited(RoomcastError):
    """429: too many messages per second; the message was dropped."""

    code = 429


class Unavailable(RoomcastError):
    """503: server full, out of rooms, or shutting down."""

    code = 503


_ERRORS = {cls.code: cls for cls in RoomcastError.__subclasses__()}


class ConnectionClosed(ConnectionError):
    """The server closed the connection (or it was shut down locally)."""


class ProtocolError(ConnectionError):
    """The server sent something that is not a frame of JSON; the stream cannot be trusted."""


def error_from_response(response):
    """Builds the ``RoomcastError`` subclass for a reply's ``response`` object."""
    code = response.get("code")
    cls = _ERRORS.get(code, RoomcastError)
    return cls(code, response.get("msg", ""), response.get("detail"))


# --- framing ------------------------------------------------------------------------------


def encode_frame(message):
    """One frame: a 4-byte big-endian length, then the message as compact UTF-8 JSON.

    NaN and infinities raise ``ValueError`` here: they are not JSON, and the server would
    answer 400."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = body.encode("utf-8")
    return _HEADER.pack(len(body)) + body


def recv_exact(sock, n):
    """Reads exactly ``n`` bytes from a blocking socket, or raises ``ConnectionClosed``.

    This loop is the fix for the classic socket-tutorial bug: ``sock.recv(n)`` returns
    *at most* n bytes, whatever the peer happened to send in one call. A 60 KB frame can
    arrive as 16 KB + 44 KB, and a 4-byte header can even arrive as 1 + 3 bytes. Code that
    does ``json.loads(sock.recv(4096))`` works on localhost with small messages and then
    fails at random in production.
    """
    parts = []
    remaining = n
    while remaining > 0:
        chunk = sock.recv(min(remaining, _CHUNK))
        if not chunk:
            raise ConnectionClosed(f"connection closed with {remaining} of {n} bytes unread")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_frame(sock):
    """Reads one frame from a blocking socket and returns the decoded JSON object.

    The simplest correct reader, for scripts that own their socket; ``Client.recv`` does the
    same with a buffer, so that a timeout never drops half a frame.
    """
    (length,) = _HEADER.unpack(recv_exact(sock, _HEADER.size))
    _check_length(length)
    return _decode_body(recv_exact(sock, length))


def _check_length(length):
    if length == 0 or length > MAX_FRAME:
        raise ProtocolError(f"bad frame length {length}: expected 1..{MAX_FRAME} bytes")


def _decode_body(body):
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"frame is not UTF-8 JSON: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame is not a JSON object: {message!r}")
    return message


# --- poses --------------------------------------------------------------------------------


def vec3(value):
    """A position as the server wants it: ``{"x", "y", "z"}`` from a dict or an (x, y, z)."""
    if isinstance(value, dict):
        return {axis: float(value[axis]) for axis in ("x", "y", "z")}
    x, y, z = value
    return {"x": float(x), "y": float(y), "z": float(z)}


def rotation(value):
    """A rotation: Euler ``(x, y, z)`` or quaternion ``(x, y, z, w)``, as a tuple or a dict."""
    if isinstance(value, dict):
        axes = ("x", "y", "z", "w") if "w" in value else ("x", "y", "z")
        return {axis: float(value[axis]) for axis in axes}
    values = tuple(value)
    if len(values) not in (3, 4):
        raise ValueError(f"rotation needs 3 (Euler) or 4 (quaternion) numbers, got {values!r}")
    return dict(zip(("x", "y", "z", "w"), map(float, values)))


# --- the client ---------------------------------------------------------------------------


class Client:
    """A blocking connection to a roomcast server.

    ``Client(host, port)`` connects at once; ``Client()`` waits for ``connect()``. Use it as a
    context manager to close it on the way out.
    """

    def __init__(self, host=None, port=DEFAULT_PORT, timeout=10.0):
        self.sock = None
        self.user = None
        self._buf = bytearray()
        self._pending = collections.deque()  # Frames read while waiting for a reply.
        self._events = collections.deque()  # Events of a frame that events() began.
        self._send_lock = threading.Lock()
        if host is not None:
            self.connect(host, port, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- connection

    def connect(self, host=DEFAULT_HOST, port=DEFAULT_PORT, timeout=10.0):
        """Opens the TCP connection; ``timeout`` bounds the connect only."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(None)  # Reads wait in select(), so the socket itself stays blocking.
        # Small frames (poses, button presses) should leave now, not wait for Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return self

    @classmethod
    def from_socket(cls, sock):
        """Wraps a connected stream socket (e.g. one with tuned buffers, or a socketpair)."""
        client = cls()
        sock.settimeout(None)
        client.sock = sock
        return client

    def fileno(self):
        """The socket's descriptor, for select(). Frames may already wait in the buffer:
        check ``has_buffered()`` before blocking on it."""
        return self.sock.fileno()

    def has_buffered(self):
        """Whether a whole frame is already buffered, so ``recv`` will not block."""
        if self._pending:
            return True
        if len(self._buf) < _HEADER.size:
            return False
        (length,) = _HEADER.unpack_from(self._buf)
        return len(self._buf) >= _HEADER.size + length

    def shutdown(self):
        """Half-closes: sends nothing more. The server answers what it already has, then
        closes, so a reader sees the last events and then ``ConnectionClosed``."""
        with self._send_lock:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # Already closed by the peer: nothing left to flush.

    def close(self, linger=1.0):
        """Closes gracefully: half-close, wait up to ``linger`` seconds for the server to
        close its side (so everything sent is processed, not reset), then close."""
        if self.sock is None:
            return
        self.shutdown()
        deadline = time.monotonic() + linger
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                    break
                if not self.sock.recv(_CHUNK):
                    break
        except OSError:
            pass
        self.sock.close()
        self.sock = None

    # --- sending

    def send(self, message):
        """Sends one message (any JSON object), framed."""
        frame = encode_frame(message)
        with self._send_lock:
            if self.sock is None:
                raise ConnectionClosed("not connected")
            self.sock.sendall(frame)

    def login(self, user, password=""):
        """Logs in and returns the reply (``code`` 202, ``detail["user"]``). Raises ``Invalid``
        (bad name) or ``Conflict`` (name taken). The lobby's join and list events follow."""
        self.send({"system": "login", "options": {"user": user, "pass": password}})
        reply = self._wait_reply()
        self.user = reply["detail"].get("user", user)
        return reply

    def ping(self):
        """Round trip; returns the reply (``code`` 200, ``msg`` "pong")."""
        self.send({"system": "ping"})
        return self._wait_reply()

    def rooms(self):
        """The room directory: a list of ``{"room": NAME, "users": COUNT}``."""
        self.send({"system": "rooms"})
        return self._wait_reply()["detail"].get("rooms", [])

    def join(self, room):
        """Joins a room (created if new). The room's history, your join event and the member
        list follow as events."""
        self._room(room, "join", "")

    def leave(self, room):
        """Leaves a room."""
        self._room(room, "leave", "")

    def list(self, room):
        """Asks for a room's members; they arrive as a ``list`` event."""
        self._room(room, "list", "")

    def msg(self, room, data):
        """Says something (any JSON value) to everyone in the room, yourself included."""
        self._room(room, "msg", data)

    def transform(self, room, pos, rot):
        """Streams a pose. ``pos`` is (x, y, z) or a dict; ``rot`` is Euler (x, y, z) or a
        quaternion (x, y, z, w), or a dict. The server sends the room the latest pose of each
        user once per tick, so sending faster than its fps costs bandwidth, nothing else."""
        self._room(room, "transform", {"pos": vec3(pos), "rot": rotation(rot)})

    def game(self, room, data):
        """A game command: ``{"start": "tictactoe"}``, ``{"join": True}``, ``{"move": 4}``,
        ``{"restart": True}``. The new state arrives as a ``game`` event."""
        self._room(room, "game", data)

    def _room(self, room, kind, data):
        self.send({"room": room, "type": kind, "data": data})

    # --- receiving

    def recv(self, timeout=None):
        """The next frame, decoded: ``{"info": "system"|"error"|"user", ...}``.

        Waits at most ``timeout`` seconds (``None``: forever) and raises ``TimeoutError``;
        a partly received frame stays buffered for the next call. Raises ``ConnectionClosed``
        at the end of the stream. Error frames are returned, not raised.

        Do not mix with ``events()`` in one loop: events that ``events()`` has taken out of a
        frame but not yet yielded are kept for ``events()`` only.
        """
        if self._pending:
            return self._pending.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._read_frame(deadline)

    def events(self, timeout=None, deadline=None):
        """Yields room events, one dict per event of each ``"info": "user"`` frame:
        ``{"time", "user", "type", "data", "room", "history"}``, where ``room`` is the frame's
        room and ``history`` is True for the backlog a joiner gets.

        Stops (returns) when no frame arrives for ``timeout`` seconds, or at ``deadline`` (a
        ``time.monotonic()`` value); with neither, runs until the connection closes, which
        raises ``ConnectionClosed``. An error frame is raised as its ``RoomcastError``
        subclass. A success reply (e.g. to a ``ping`` sent from another thread) is yielded as
        ``{"type": "system", "room": None, "history": False, "user": None, **response}``.
        """
        while True:
            wait = timeout
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            # Pop before yielding: a caller that stops early (as wait_for does) loses nothing,
            # and the rest of a frame's events wait here for the next call.
            while self._events:
                yield self._events.popleft()
            try:
                frame = self.recv(wait)
            except TimeoutError:
                return
            self._events.extend(self._flatten(frame))

    def wait_for(self, match, timeout=5.0):
        """Reads events until ``match(event)`` is true and returns that event; raises
        ``TimeoutError`` after ``timeout`` seconds. Events before it are consumed."""
        deadline = time.monotonic() + timeout
        for event in self.events(deadline=deadline):
            if match(event):
                return event
        raise TimeoutError(f"no matching event within {timeout} s")

    @staticmethod
    def _flatten(frame):
        """A frame's events as a list; an error frame is raised."""
        info = frame.get("info")
        if info == "user":
            room = frame.get("room")
            history = frame.get("history") is True
            return [dict(event, room=room, history=history) for event in frame.get("payload", [])]
        if info == "error":
            raise error_from_response(frame.get("response", {}))
        if info == "system":
            response = frame.get("response", {})
            return [dict(response, type="system", room=None, history=False, user=None)]
        raise ProtocolError(f"unknown frame: {frame!r}")

    def _wait_reply(self, timeout=10.0):
        """Reads until the reply to a system command and returns its ``response``, or raises
        it as a ``RoomcastError``. Frames read on the way are kept for ``recv``/``events``,
        including errors that carry a room: those answer earlier room messages."""
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                frame = self._read_frame(deadline)
                response = frame.get("response", {})
                if frame.get("info") == "error" and "room" not in response.get("detail", {}):
                    raise error_from_response(response)
                if frame.get("info") == "system":
                    return response
                skipped.append(frame)
        finally:
            self._pending.extend(skipped)

    def _read_frame(self, deadline):
        """Fills the buffer until it holds a whole frame; the buffered twin of ``read_frame``.

        Why a buffer and a loop: one ``recv`` returns whatever bytes have arrived, which may
        be a fragment of a frame or several frames at once (see ``recv_exact``).
        """
        while True:
            if len(self._buf) >= _HEADER.size:
                (length,) = _HEADER.unpack_from(self._buf)
                _check_length(length)
                end = _HEADER.size + length
                if len(self._buf) >= end:
                    body = bytes(self._buf[_HEADER.size : end])
                    del self._buf[:end]
                    return _decode_body(body)
            sock = self.sock  # Read once: close() from another thread sets it to None.
            if sock is None:
                raise ConnectionClosed("not connected")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([sock], [], [], wait)[0]:
                raise TimeoutError("no frame from the server in time")
            chunk = sock.recv(_CHUNK)
            if not chunk:
                raise ConnectionClosed("the server closed the connection")
            self._buf += chunk


def _demo():
    """``python3 roomcast_client.py [host] [port]``: log in, ping, list rooms."""
    host = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_HOST
    port = int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_PORT
    with Client(host, port) as client:
        print(client.login(f"py-{int(time.time()) % 100000}", "1234")["msg"])
        start = time.monotonic()
        client.ping()
        print(f"ping: {(time.monotonic() - start) * 1000:.2f} ms")
        print("rooms:", client.rooms())


if __name__ == "__main__":
    _demo()
