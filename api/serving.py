"""The gunicorn worker class gridcase is served with: ``api.serving.KeepAliveWorker``.

    gunicorn -w 2 -k api.serving.KeepAliveWorker 'api.app:create_app()'

One thread per worker process. Idle keep-alive connections wait in a selector; when one becomes
readable, its next request is read, answered and logged on that same thread, then the connection goes
back to the selector. Connections that are readable together are served in turn, one request each.
New connections are spread over the workers by how many each holds (``Shares``).

Why not gunicorn's own classes:
- ``sync`` closes the connection after every request, so each request of a mobile client or a hotline
  system pays a TCP handshake, and a load balancer in front cannot keep connections warm.
- ``gthread`` hands every request from its poller thread to a pool thread and the finished connection
  back again. The two threads of one process take turns on the GIL; a poller that wakes while a
  request runs can hold that request up to the interpreter's switch interval (5 ms), and on SQLite that
  request may be holding the database's single write lock meanwhile.

The price of one thread: a client that sends a request slowly holds its worker until it is complete or
``GRIDCASE_READ_TIMEOUT_S`` (default 5) passes; then the connection is closed. New connections are not
read until they are readable, so an open but silent connection holds nothing. Exposed to the internet,
put a buffering proxy (nginx) in front, as gunicorn advises for its sync worker.

The only module that imports gunicorn; it knows nothing of the app it serves (no flask, api or engine).
"""

from __future__ import annotations

import errno
import gc
import mmap
import os
import select
import selectors
import socket
import ssl
import struct
import time
from datetime import datetime
from typing import Any

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.workers import base

READ_TIMEOUT_S = 5.0  # default: the longest a request's remaining bytes may take once it has started arriving
DRAIN_TIMEOUT_S = 2.0  # reading past a request body the app left unread, before the next request
LINGER_S = 2.0  # after closing its side of a connection, how long the worker still reads what comes
LINGER_BYTES = 64 * 1024  # … and how much of it, before it closes the socket (RFC 9112 §9.6)


def read_timeout() -> float:
    """``GRIDCASE_READ_TIMEOUT_S``: seconds, above 0."""
    text = os.environ.get("GRIDCASE_READ_TIMEOUT_S", "").strip()
    try:
        value = float(text) if text else READ_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"GRIDCASE_READ_TIMEOUT_S must be a number of seconds above 0, not {text!r}")
    return value


class Connection:
    """One client connection: its socket, peer, parser (which buffers across keep-alive requests) and
    the instant its keep-alive expires."""

    __slots__ = ("addr", "expires", "parser", "server", "sock")

    def __init__(self, sock: socket.socket, addr: Any, server: Any) -> None:
        self.sock, self.addr, self.server = sock, addr, server
        self.parser: Any = None
        self.expires = 0.0

    def buffered(self) -> bool:
        """Bytes of a next (pipelined) request already read off the socket."""
        return bool(self.parser is not None and self.parser.unreader.buf.getvalue())


class Lingering:
    """A connection the worker is closing (RFC 9112 §9.6): its write side is shut, so the client has
    the whole last answer and an end of stream; what the client still sends is read and dropped, in
    the selector like any connection, until the client closes too, ``LINGER_BYTES`` have come or
    ``LINGER_S`` have passed. Only then is the socket closed: closing with unread bytes in it would
    send a reset that can destroy the answer on its way. (gunicorn's ``util.close_graceful`` lingers
    with a blocking read: on one thread, every other client then waited up to 2 s, measured in the load
    bench as a 2 s stall of both workers 30 s into the run, when the clients' idle login connections
    expired.)"""

    __slots__ = ("drained", "sock", "until")

    def __init__(self, sock: socket.socket, until: float) -> None:
        self.sock, self.until, self.drained = sock, until, 0

    def drain(self) -> bool:
        """Read what has come without waiting; whether the socket is done with (closed by the client,
        failed, or past ``LINGER_BYTES``)."""
        while True:
            try:
                chunk = self.sock.recv(LINGER_BYTES)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
            self.drained += len(chunk)
            if not chunk or self.drained >= LINGER_BYTES:
                return True


class Coalesced:
    """Stands in for the socket a response writes to: the status line with headers and the body go
    out in one ``sendall`` (gunicorn sends them separately, two loopback segments and two wake-ups of
    the client for every small JSON answer). Past ``FLUSH_AT`` bytes, or for anything but ``sendall``
    (a file sent with ``sendfile``), what is held goes out first and the real socket takes over."""

    FLUSH_AT = 64 * 1024

    __slots__ = ("held", "sent", "size", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.held: list[bytes] = []
        self.size = 0
        self.sent = False  # whether anything reached the real socket

    def discard(self) -> None:
        self.held, self.size = [], 0

    def sendall(self, data: bytes) -> None:
        self.held.append(data)
        self.size += len(data)
        if self.size >= self.FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.held:
            data = b"".join(self.held)
            self.held, self.size = [], 0
            self.sent = True
            self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self.sock, name)


class Shares:
    """How many connections each worker holds, in memory every worker shares: it is mapped when this
    module is imported, in the arbiter, before the workers are forked. Each worker writes its count and
    the instant of its last turn into its slot (its age modulo ``SLOTS``) every turn.

    A worker holding more connections than the least-loaded live worker leaves new connections to the
    others. Without it, keep-alive connections opened in a burst while the workers were idle all went
    to whichever woke first (measured: 51 of the load bench's 52 on one worker, the other idle)."""

    SLOTS = 128
    STALE_S = 3.0  # a slot whose worker has not turned for this long is gone (crashed or stopped)
    _SLOT = struct.Struct("qqd")  # pid, open connections, monotonic instant of the last turn

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, self.SLOTS * self._SLOT.size)

    def publish(self, slot: int, pid: int, count: int, now: float) -> None:
        self._SLOT.pack_into(self.memory, slot * self._SLOT.size, pid, count, now)

    def least_other(self, slot: int, now: float) -> int | None:
        """The fewest connections a live worker other than ``slot``'s holds; None when it is alone."""
        least = None
        for other, (pid, count, beat) in enumerate(self._SLOT.iter_unpack(self.memory)):
            if pid and other != slot and now - beat < self.STALE_S and (least is None or count < least):
                least = count
        return least


SHARES = Shares()


class KeepAliveWorker(base.Worker):
    """See the module docstring."""

    DEFER_S = 0.05  # the longest a new connection is left to the other workers before this one takes it

    alive: bool

    def init_process(self) -> None:
        self.read_timeout = read_timeout()
        self.selector = selectors.DefaultSelector()
        self.idle: dict[Connection, None] = {}  # waiting for their next request, oldest expiry first
        self.lingering: dict[Lingering, None] = {}  # being closed, oldest first
        self.ready: list[Connection] = []  # a pipelined request already buffered
        self.open_count = 0
        self.slot = self.age % Shares.SLOTS
        self.deferred_since: float | None = None  # a new connection has waited for another worker since
        super().init_process()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        # Everything the app loaded at boot (Flask, schemas, parsed specs) lives as long as the
        # worker: the cyclic collector need not scan it again. Without this a full collection under
        # load took 50-65 ms, a pause every request queued behind (and, on SQLite, the other worker
        # too when it came while the write lock was held).
        gc.collect()
        gc.freeze()
        for listener in self.sockets:
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ, listener)
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        accepting = True
        while self.alive:
            self.notify()
            now = time.monotonic()
            SHARES.publish(self.slot, self.pid, self.open_count, now)
            least = SHARES.least_other(self.slot, now)
            over_share = least is not None and self.open_count > least
            if accepting != (self.open_count < self.cfg.worker_connections and not over_share):
                accepting = not accepting
                for listener in self.sockets:  # new connections wait in the listen backlog
                    if accepting:
                        self.selector.register(listener, selectors.EVENT_READ, listener)
                    else:
                        self.selector.unregister(listener)
            timeout = 0.0 if self.ready else self._wait()
            if over_share and self.open_count < self.cfg.worker_connections:
                self._take_if_left(now)
                timeout = min(timeout, self.DEFER_S / 2)
            self._turn(timeout=timeout)
            if not self.is_parent_alive():
                break
            self._expire(time.monotonic())
        SHARES.publish(self.slot, 0, 0, 0.0)
        self._shut()

    def _take_if_left(self, now: float) -> None:
        """Over its share, the worker leaves new connections to the others, but takes one that has
        waited ``DEFER_S`` (the others may be busy with a long request, or stuck)."""
        waiting = select.select(self.sockets, [], [], 0)[0]
        if not waiting:
            self.deferred_since = None
        elif self.deferred_since is None:
            self.deferred_since = now
        elif now - self.deferred_since >= self.DEFER_S:
            self.deferred_since = None
            self._accept(waiting[0])

    def is_parent_alive(self) -> bool:
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def _wait(self) -> float:
        """Seconds to wait for events: until the oldest keep-alive expires or the oldest lingering
        close is due, at most 1 s (the worker reports alive to the arbiter every turn)."""
        due = time.monotonic() + 1.0
        if self.idle:
            due = min(due, next(iter(self.idle)).expires)
        if self.lingering:
            due = min(due, next(iter(self.lingering)).until)
        return max(0.0, due - time.monotonic())

    def _turn(self, timeout: float) -> None:
        ready, self.ready = self.ready, []
        for key, _ in self.selector.select(timeout):
            data = key.data
            if data is None:  # the wake-up pipe (signals)
                try:
                    os.read(self.PIPE[0], 4096)
                except OSError:
                    pass
            elif isinstance(data, Connection):
                self.selector.unregister(data.sock)
                self.idle.pop(data, None)
                ready.append(data)
            elif isinstance(data, Lingering):
                if data.drain():
                    self._close(data)
            else:
                self._accept(data)
        for conn in ready:
            self._serve(conn)

    def _accept(self, listener: socket.socket) -> None:
        """Take one new connection. One a turn, not all that wait: a worker busy answering cannot
        accept meanwhile, so the idle worker takes the next one, and long-lived keep-alive
        connections end up spread over the workers by how busy each is. (Taking all that waited, the
        50 connections of the load bench split unevenly: measured, 10 of its clients got answers
        4.5 times as fast as the other 40.)"""
        try:
            sock, addr = listener.accept()
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                return
            raise
        util.close_on_exec(sock)
        self.open_count += 1
        self._park(Connection(sock, addr, listener.getsockname()))

    def _park(self, conn: Connection) -> None:
        """Wait for the connection's next request (or its close) in the selector."""
        if conn.buffered():
            self.ready.append(conn)
            return
        conn.sock.setblocking(False)
        conn.expires = time.monotonic() + max(self.cfg.keepalive, 1)
        self.idle[conn] = None
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: Connection) -> None:
        """Close a connection (not in the selector): shut its write side now, close it once the client
        has closed too or ``LINGER_S`` have passed (``Lingering``)."""
        self.open_count -= 1
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
        except OSError:  # the client is gone already
            conn.sock.close()
            return
        item = Lingering(conn.sock, time.monotonic() + LINGER_S)
        self.lingering[item] = None
        self.selector.register(conn.sock, selectors.EVENT_READ, item)

    def _close(self, item: Lingering) -> None:
        del self.lingering[item]
        self.selector.unregister(item.sock)
        item.sock.close()

    def _expire(self, now: float) -> None:
        while self.idle:
            conn = next(iter(self.idle))
            if conn.expires > now:
                break
            del self.idle[conn]
            self.selector.unregister(conn.sock)
            self._drop(conn)
        while self.lingering:
            item = next(iter(self.lingering))
            if item.until > now:
                break
            self._close(item)

    def _shut(self) -> None:
        """Stopping: connections waiting for a request are closed (one being served has finished), and
        so are those still lingering: the worker does not wait for their clients."""
        for conn in list(self.idle):
            self.selector.unregister(conn.sock)
            self._drop(conn)
        self.idle.clear()
        for conn in self.ready:
            self._drop(conn)
        for item in list(self.lingering):
            self._close(item)
        self.selector.close()

    # -- one request ------------------------------------------------------------------------------

    def _serve(self, conn: Connection) -> None:
        req = None
        keep = False
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(self.read_timeout)
            if conn.parser is None:
                if self.cfg.is_ssl:
                    conn.sock = self._wrap_ssl(conn.sock)
                conn.parser = http.get_parser(self.cfg, conn.sock, conn.addr)
            req = next(conn.parser)
            keep = self._answer(req, conn) and bool(
                conn.parser.finish_body(deadline=time.monotonic() + DRAIN_TIMEOUT_S)
            )
        except http.errors.NoMoreData as err:
            self.log.debug("Ignored premature client disconnection. %s", err)
        except StopIteration as err:
            self.log.debug("Closing connection. %s", err)
        except TimeoutError:
            self.log.debug("Closing connection: the request did not arrive within %s s", self.read_timeout)
        except ssl.SSLError as err:
            if err.args[0] != ssl.SSL_ERROR_EOF:
                self.handle_error(req, conn.sock, conn.addr, err)
        except OSError as err:
            if err.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as err:
            self.handle_error(req, conn.sock, conn.addr, err)
        if keep and self.alive:
            self._park(conn)
        else:
            self._drop(conn)

    def _wrap_ssl(self, sock: socket.socket) -> socket.socket:
        from gunicorn import sock as gsock

        return gsock.ssl_wrap_socket(sock, self.cfg)

    def _answer(self, req: Any, conn: Connection) -> bool:
        """Run the app for one request and write its response; whether the connection may be kept."""
        environ: dict[str, Any] = {}
        resp = None
        out = Coalesced(conn.sock)
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.addr, conn.server, self.cfg)
            resp.sock = out
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
                out.flush()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent and out.sent:
                # half a response went out: writing a 500 after it would corrupt the stream
                self.log.exception("Error handling request")
                raise StopIteration() from None
            out.discard()  # nothing went out yet: the caller answers 500 instead
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")


__all__ = ["KeepAliveWorker"]
