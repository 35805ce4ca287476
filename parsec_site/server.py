"""Serving the ASGI application with daphne: TCP or TLS, one process or several, graceful shutdown.

* `--ssl-keyfile` / `--ssl-certfile`: HTTPS and WSS on the one port (the certificate file may hold the
  whole chain, leaf first, as `fullchain.pem` files do).
* `--fd N`: serve on an inherited listening socket instead of binding `--host`/`--port` (systemd socket
  activation, or our own `--workers` supervisor).
* `--workers N`: this process binds the port once and supervises N server processes that all accept on
  that socket (the kernel spreads the connections); with the Redis channel layer they act as one server.
* `--request-timeout`: a connection that has not delivered a whole HTTP request or websocket upgrade
  (TLS handshake included) within it is dropped; twisted's own 60 s idle timeout restarts with every
  byte, so a client trickling its request would otherwise hold its socket forever.
* SIGTERM / SIGINT: stop accepting, let running commands reply (at most `--shutdown-grace` seconds), close
  websocket sessions with 1001 "going away", then stop. A second signal stops at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from parsec_site import lifecycle

logger = logging.getLogger("parsec.server")

# Matches the reference server, which drops connections on messages above 16 MiB (docs/protocol.md#limits);
# daphne's 1 MiB default would cut a 1 MiB block plus its envelope before our size check.
WEBSOCKET_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# daphne pings each open websocket every `ping_interval` seconds, which keeps proxies' idle timers
# (nginx's proxy_read_timeout, load balancers' idle timeouts) from cutting quiet connections and lets
# TCP notice peers that vanished. Through autobahn's autoPingTimeout it would also drop a connection
# whose pong is late, but the official client only answers pings on a connection it is reading, so its
# idle pooled connections never would: 0 disables that drop (autobahn arms no timer).
PING_INTERVAL = 30
PING_TIMEOUT = 0
LISTEN_BACKLOG = 1024
POOL_SAMPLE_INTERVAL = 5.0
# A worker that dies this soon after its start is failing to start, not crashing: do not respawn it.
WORKER_START_PERIOD = 10.0
# At shutdown: how long clients get to answer the 1001 close, and cancelled tasks to unwind.
CLOSE_HANDSHAKE_WAIT = 1.0
LEFTOVER_TASKS_WAIT = 1.0
# Then how long the process may take to exit once its event loop stopped.
EXIT_WAIT = 2.0
PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


# --- TLS -----------------------------------------------------------------------------------------


def tls_options(keyfile: str, certfile: str) -> Any:
    """Twisted's TLS server options from PEM files: the key, and the certificate then its chain."""
    from OpenSSL import crypto
    from twisted.internet import ssl

    key = crypto.load_privatekey(crypto.FILETYPE_PEM, Path(keyfile).read_bytes())
    blocks = PEM_BLOCK.findall(Path(certfile).read_bytes())
    if not blocks:
        raise ValueError(f"no PEM certificate in {certfile}")
    leaf, *chain = (crypto.load_certificate(crypto.FILETYPE_PEM, block) for block in blocks)
    # Twisted's defaults: TLS 1.2 at least, its vetted cipher list.
    return ssl.CertificateOptions(privateKey=key, certificate=leaf, extraCertChain=chain)


# --- One server process --------------------------------------------------------------------------


@dataclass
class ServeOptions:
    host: str
    port: int
    fd: int | None = None
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None
    shutdown_grace: float = 10.0
    request_timeout: float = 60.0
    server_name: str = "parsec"
    action_logger: Callable[[str, str, dict[str, Any]], None] | None = None
    on_ready: list[Callable[[], None]] = field(default_factory=list)
    # `--admin-port`: a second listener, same application and TLS; the console answers only there.
    admin_host: str | None = None
    admin_port: int | None = None
    admin_fd: int | None = None


def build_server(application: Any, options: ServeOptions) -> Any:
    """A daphne `Server` listening as `options` says, with our signal handling; `.run()` blocks."""
    from daphne.server import Server
    from twisted.internet import reactor

    # The configuration gives both files or neither.
    tls = tls_options(options.ssl_keyfile, options.ssl_certfile) if options.ssl_keyfile and options.ssl_certfile else None
    server = Server(
        application=application,
        endpoints=["listen() below"],  # daphne refuses to be built without any
        signal_handlers=False,
        action_logger=options.action_logger,
        # The events connection lives as long as the client: no maximum websocket lifetime.
        websocket_timeout=-1,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        websocket_max_message_size=WEBSOCKET_MAX_MESSAGE_SIZE,
        websocket_max_frame_size=WEBSOCKET_MAX_MESSAGE_SIZE,
        server_name=options.server_name,
    )
    # We listen ourselves once the reactor runs: daphne's endpoint strings cannot say "TLS on an
    # inherited socket", nor hand back the ports to close at shutdown.
    server.endpoints = []
    ports: list[Any] = []

    def listen() -> None:
        server.ws_factory.protocol = websocket_protocol()  # built by `run()`, before the reactor runs
        bound_requests(server.http_factory, options.request_timeout, reactor)
        try:
            port = _listen(reactor, server.http_factory, options, tls)
            if options.admin_port is not None:
                admin = replace(options, host=options.admin_host or options.host, port=options.admin_port,
                                fd=options.admin_fd)
                ports.append(_listen(reactor, server.http_factory, admin, tls))
        except Exception as exc:  # bind refused, bad fd...: daphne's own failure path stops the reactor
            from twisted.python.failure import Failure

            server.listen_error(Failure(exc))
            return
        ports.append(port)
        server.listen_success(port)
        for callback in options.on_ready:
            callback()

    reactor.callWhenRunning(listen)
    # With workers, each process keeps its pool gauges fresh for the scrapes that another one answers.
    from twisted.internet.task import LoopingCall

    from parsec_site.metrics import sample_db_pool

    reactor.callWhenRunning(LoopingCall(sample_db_pool).start, POOL_SAMPLE_INTERVAL, False)
    shutdown = GracefulShutdown(server, ports, options.shutdown_grace)
    reactor.callWhenRunning(shutdown.install)
    return server


def websocket_protocol() -> type:
    """daphne's websocket protocol, able to close with RFC 6455's server codes, and with a reason.

    autobahn's `sendClose` lets an application send only 1000 or 3000-4999, and daphne closes through it:
    the consumer's 1001 at shutdown (and 1011 after a crash) raised there, and no close frame was sent.
    1001 "going away", 1008 "policy violation", 1011 "internal error" (RFC 6455 7.4.1) and 1013 "try
    again later" (IANA registry) go through autobahn's own frame sender. daphne also drops the close
    message's `reason`, which says why a connection limit closed the connection.
    """
    from daphne.ws_protocol import WebSocketProtocol

    class ParsecWebSocketProtocol(WebSocketProtocol):
        def handle_reply(self, message: dict[str, Any]) -> None:
            if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
                self.serverClose(code=message.get("code"), reason=message.get("reason"))
            else:
                super().handle_reply(message)

        def serverClose(self, code: int | None = None, reason: str | None = None) -> None:
            code = 1000 if code is None else code
            # A close frame's reason is at most 123 bytes (RFC 6455 5.5.1: 125 with the code).
            encoded = reason.encode()[:123] if reason else None
            if code in (1001, 1008, 1011, 1013):
                self.sendCloseFrame(code=code, reasonUtf8=encoded, isReply=False)
            else:
                self.sendClose(code=code, reason=reason[:120] if reason else None)

    return ParsecWebSocketProtocol


def bound_requests(factory: Any, timeout: float, reactor: Any) -> None:
    """Drop connections whose HTTP request (or websocket upgrade) is not whole `timeout` seconds after
    the connection opened, or after the previous reply of a kept-alive connection.

    The deadline is armed when the connection is built (so it also bounds a TLS handshake), disarmed
    when daphne gets the complete request (`process`: headers and body received, or the upgrade), and
    armed again when a reply ends on a connection kept alive. The HTTP channel is reached through
    twisted's protocol-negotiating wrapper (`_channel`), the object requests know as their `channel`.
    """
    from daphne.http_protocol import WebRequest

    deadlines: dict[Any, Any] = {}  # HTTP channel -> its pending IDelayedCall

    def arm(channel: Any) -> None:
        disarm(channel)
        deadlines[channel] = reactor.callLater(timeout, expire, channel)

    def disarm(channel: Any) -> None:
        call = deadlines.pop(channel, None)
        if call is not None and call.active():
            call.cancel()

    def expire(channel: Any) -> None:
        deadlines.pop(channel, None)
        if channel.transport is not None:
            logger.info("Connection dropped: no whole HTTP request within %ss", timeout)
            channel.transport.abortConnection()

    class BoundedWebRequest(WebRequest):
        def process(self) -> None:
            disarm(self.channel)
            super().process()

        def finish(self) -> None:
            # Kept alive: the next request gets its own bound, armed before twisted reads it (it may
            # be buffered already, and processed within `finish`). Closed: connectionLost disarms it.
            if self.channel is not None and self.channel.persistent:
                arm(self.channel)
            super().finish()

    build = factory.buildProtocol

    def buildProtocol(addr: Any) -> Any:
        protocol = build(addr)
        if protocol is None:
            return None
        protocol.requestFactory = BoundedWebRequest
        channel = getattr(protocol, "_channel", protocol)
        arm(channel)
        lost = protocol.connectionLost

        def connectionLost(reason: Any) -> None:
            disarm(channel)
            lost(reason)

        protocol.connectionLost = connectionLost
        return protocol

    factory.buildProtocol = buildProtocol


def _listen(reactor: Any, factory: Any, options: ServeOptions, tls: Any) -> Any:
    if options.fd is not None:
        # Twisted's accept loop needs a non-blocking socket; an inherited one (our `--workers`
        # supervisor's, systemd's without NonBlocking=) is blocking, and the second accept of a
        # read would then freeze the reactor. O_NONBLOCK belongs to the shared file description.
        os.set_blocking(options.fd, False)
        family = socket.socket(fileno=os.dup(options.fd)).family
        if tls is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(tls, False, factory)
        return reactor.adoptStreamPort(options.fd, family, factory)
    interface = options.host.strip("[]")
    if tls is not None:
        return reactor.listenSSL(options.port, factory, tls, backlog=LISTEN_BACKLOG, interface=interface)
    return reactor.listenTCP(options.port, factory, backlog=LISTEN_BACKLOG, interface=interface)


class GracefulShutdown:
    def __init__(self, server: Any, ports: list[Any], grace: float) -> None:
        self.server = server
        self.ports = ports
        self.grace = grace
        self.stopping = False
        self.reactor_stopping = False
        # The loop keeps only a weak reference to a task: the stop tasks are held here until they end.
        self.tasks: set[asyncio.Future[None]] = set()

    def install(self) -> None:
        from twisted.internet import reactor

        loop = reactor._asyncioEventloop
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        if self.stopping:
            logger.warning("Second %s: stopping now", signal.Signals(signum).name)
            self.tasks.add(asyncio.ensure_future(self.stop_reactor()))
            return
        self.stopping = True
        self.tasks.add(asyncio.ensure_future(self.stop(signal.Signals(signum).name)))

    async def stop(self, reason: str) -> None:
        started = time.monotonic()
        logger.info("%s received: no new connections; running commands have %ss to finish", reason, self.grace)
        for port in self.ports:
            port.stopListening()
        sessions = await lifecycle.drain(self.grace)
        await self._wait_http_requests(deadline=started + self.grace)
        # Each client answers its 1001, then its session ends (its consumer's `disconnect` runs).
        await lifecycle.wait_closed(timeout=CLOSE_HANDSHAKE_WAIT)
        logger.info("Closed %d websocket session(s) in %.1fs", sessions, time.monotonic() - started)
        await self.stop_reactor()

    async def stop_reactor(self) -> None:
        """Stop the event loop with nothing left suspended on it.

        What is still pending (a command cut at the grace, the command loop of a session whose client
        never answered the close, the drain itself after a second signal) is cancelled and let unwind
        first: a coroutine left suspended would be destroyed during the interpreter's exit, where
        CPython 3.11 crashes on it (SIGSEGV, exit status 139 instead of 0).
        """
        from twisted.internet import reactor

        if self.reactor_stopping:
            return
        self.reactor_stopping = True
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=LEFTOVER_TASKS_WAIT)
        reactor.stop()  # type: ignore[misc]  # twisted types the installed reactor as its module
        # Only the exit is left, but the interpreter joins its threads first: one still blocked in work
        # cut at the grace (an SMTP or object store call, a query waiting on a lock) would hold it.
        threading.Thread(target=_exit_after, args=(EXIT_WAIT,), name="parsec-exit", daemon=True).start()

    async def _wait_http_requests(self, deadline: float) -> None:
        from daphne.http_protocol import WebRequest

        while time.monotonic() < deadline:
            busy = [
                protocol for protocol, details in list(self.server.connections.items())
                if isinstance(protocol, WebRequest) and not details.get("disconnected")
                and details.get("application_instance") is not None and not details["application_instance"].done()
            ]
            if not busy:
                return
            await asyncio.sleep(0.05)


def _exit_after(delay: float) -> None:
    """Exit with 0 if the process still runs `delay` seconds after the event loop stopped."""
    time.sleep(delay)
    try:
        logger.warning("Worker threads still busy %ss after the stop, with cut work: exiting without them", delay)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


# --- Several processes ---------------------------------------------------------------------------


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    started: float


def bind_listening_socket(host: str, port: int) -> socket.socket:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=False)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Binds the port, runs `count` copies of `command` serving it (`PARSEC_FD`), restarts crashed ones."""

    def __init__(
        self, *, count: int, host: str, port: int, command: list[str], environ: dict[str, str],
        shutdown_grace: float, write: Callable[[str], object] = print,
        admin_host: str | None = None, admin_port: int | None = None,
    ) -> None:
        self.count = count
        self.host = host
        self.port = port
        self.command = command
        self.shutdown_grace = shutdown_grace
        self.write = write
        self.sock = bind_listening_socket(host, port)
        # `--admin-port`: the console's socket, bound here once and inherited by every worker too.
        self.admin_sock = None
        if admin_port is not None:
            try:
                self.admin_sock = bind_listening_socket(admin_host or host, admin_port)
            except OSError:
                self.sock.close()
                raise
        self.metrics_dir = tempfile.mkdtemp(prefix="parsec-metrics-")
        self.env = {name: value for name, value in environ.items() if name != "PARSEC_CMD_ARGS"}
        # Every option was already exported to its variable; the workers serve the inherited socket and
        # write their metrics where a scrape of any of them (or of `--metrics-port`, here) adds them up.
        self.env.update(PARSEC_FD=str(self.sock.fileno()), PARSEC_WORKERS="1", PROMETHEUS_MULTIPROC_DIR=self.metrics_dir)
        if self.admin_sock is not None:
            self.env["PARSEC_ADMIN_FD"] = str(self.admin_sock.fileno())
        self.workers: list[Worker] = []
        self.stop_requested_at: float | None = None
        self.exit_code = 0

    def spawn(self, index: int) -> Worker:
        fds = (self.sock.fileno(),) if self.admin_sock is None else (self.sock.fileno(), self.admin_sock.fileno())
        process = subprocess.Popen(self.command, env=self.env, pass_fds=fds)
        return Worker(index=index, process=process, started=time.monotonic())

    def request_stop(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        if self.stop_requested_at is not None:
            self._signal_all(signal.SIGKILL)  # a second signal: no more waiting
            return
        self.stop_requested_at = time.monotonic()
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    def run(self, *, metrics_host: str | None = None, metrics_port: int | None = None) -> int:
        """Until every worker is gone; 0 after a requested stop, 1 when a worker could not start."""
        previous = {signum: signal.signal(signum, self.request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        metrics_server = None
        try:
            if metrics_port is not None:
                from parsec_site.metrics import start_metrics_server

                metrics_server = start_metrics_server(metrics_host or self.host, metrics_port, self.metrics_dir)
            self.workers = [self.spawn(index) for index in range(self.count)]
            pids = ", ".join(str(worker.process.pid) for worker in self.workers)
            self.write(f"Started {self.count} server processes on {self.host}:{self.port} (pids {pids})")
            while self.workers:
                time.sleep(0.2)
                self._reap()
                if self.stop_requested_at is not None and time.monotonic() - self.stop_requested_at > self.shutdown_grace + 10:
                    self._signal_all(signal.SIGKILL)  # past their own grace, and a margin
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if metrics_server is not None:
                metrics_server.shutdown()
            self.sock.close()
            if self.admin_sock is not None:
                self.admin_sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return self.exit_code

    def _reap(self) -> None:
        for worker in list(self.workers):
            code = worker.process.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            _mark_dead(worker.process.pid, self.metrics_dir)
            if self.stop_requested_at is not None:
                continue
            if time.monotonic() - worker.started < WORKER_START_PERIOD:
                self.write(f"Server process {worker.index} exited with code {code} while starting: stopping all")
                self.exit_code = 1
                self.request_stop()
                continue
            logger.error("Server process %d (pid %d) exited with code %s: restarting it",
                         worker.index, worker.process.pid, code)
            self.workers.append(self.spawn(worker.index))


def _mark_dead(pid: int, metrics_dir: str) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir)
    except Exception:  # metrics files of a crashed process: best effort
        logger.debug("cannot mark process %d dead in %s", pid, metrics_dir, exc_info=True)


def manage_py_command() -> list[str]:
    """How a worker starts: this interpreter, this project's manage.py, `run`."""
    return [sys.executable, str(Path(__file__).resolve().parent.parent / "manage.py"), "run"]
