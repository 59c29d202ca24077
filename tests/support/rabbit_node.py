"""Private RabbitMQ nodes (and a small cluster) for fault tests and scripts.

A :class:`RabbitNode` is a RabbitMQ node of its own on this machine: its own node name
(``cluebus-<random>@localhost``), its own ports (AMQP, management HTTP, Erlang distribution)
and everything else under ``base_dir``:

    base_dir/
      rabbitmq.conf          its configuration (listeners on 127.0.0.1 only)
      advanced.config        empty (``[].``)
      conf.d/                empty: replaces /etc/rabbitmq/conf.d
      rabbitmq-env.conf      empty: replaces /etc/rabbitmq/rabbitmq-env.conf
      enabled_plugins        ``[rabbitmq_management].``
      motd                   empty
      home/.erlang.cookie    its Erlang cookie (mode 0400); HOME points here
      mnesia/<node name>/    its data (schema, quorum queue logs, message store)
      log/                   its log file, startup output, crash dump
      <node name>.pid        its PID file (the Erlang VM's OS PID)

It never reads /etc/rabbitmq/: RabbitMQ 3.10 (``rabbit_env`` and the ``rabbitmq-env``
script) takes every one of those locations from these environment variables, which are set
for the node process (and for ``rabbitmqctl`` calls through :meth:`RabbitNode.rabbitmqctl`);
any ``RABBITMQ_*`` / ``ERL_*`` variable of the calling process is dropped first:

    RABBITMQ_NODENAME, RABBITMQ_USE_LONGNAME=false,
    RABBITMQ_CONF_ENV_FILE, RABBITMQ_CONFIG_FILE, RABBITMQ_CONFIG_FILES,
    RABBITMQ_ADVANCED_CONFIG_FILE, RABBITMQ_ENABLED_PLUGINS_FILE, RABBITMQ_MOTD_FILE,
    RABBITMQ_MNESIA_BASE, RABBITMQ_MNESIA_DIR, RABBITMQ_FEATURE_FLAGS_FILE,
    RABBITMQ_PLUGINS_EXPAND_DIR, RABBITMQ_LOG_BASE, RABBITMQ_PID_FILE,
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1, RABBITMQ_NODE_PORT, RABBITMQ_DIST_PORT,
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    ERL_EPMD_ADDRESS=127.0.0.1, ERL_CRASH_DUMP, HOME (for the cookie).

The AMQP listener (``listeners.tcp.1``), the management listener (``management.tcp.ip``) and
Erlang distribution (``inet_dist_use_interface``) listen on 127.0.0.1 only. The default
``guest``/``guest`` administrator is created on first boot and, being a loopback user, is
usable from 127.0.0.1. epmd (port 4369) is the machine's shared one.

The node is started with ``/usr/lib/rabbitmq/bin/rabbitmq-server`` run directly (not the
``/usr/sbin`` wrapper, which would ``su rabbitmq`` and read /var/lib/rabbitmq) in a session
of its own; that script runs the Erlang VM (``beam.smp``) as its child. :attr:`RabbitNode.pid`
is the VM's PID as RabbitMQ writes it to its PID file, checked against the process tree (a
``beam.smp`` child of the script we started; if the PID file is missing or stale the child
found in /proc is used). SIGKILL to that PID takes the node down at once.

A :class:`RabbitCluster` is ``size`` such nodes sharing one Erlang cookie (each its own copy
in its own HOME), the first started alone and the others joining it on their first boot
through ``cluster_formation.peer_discovery_backend = classic_config`` (no ``rabbitmqctl
join_cluster`` round trips). Restarted nodes rejoin by themselves (their data remembers the
cluster).

Measured on this machine (2 CPUs, gVisor sandbox, RabbitMQ 3.10.8 on Erlang/OTP 25.2, under
eventlet as in the tests), wall clock of each call:

    start() of a fresh node (AMQP login + management API answering)   ~ 8 s
    kill() (SIGKILL to PID gone, AMQP port refusing)                   0.05-0.15 s
    restart() after a kill (same data, a quorum queue recovered)       6-7.5 s
    stop() (SIGTERM, graceful; 5 s of it is a pause right after the
           management plugin logs "to stop collect_statistics")       ~ 6 s
    sync_metadata() (one rabbitmqctl eval)                             0.6-1 s
    RabbitCluster(size=3).start() (members one after the other)        ~ 20 s
        (starting members 2 and 3 side by side gains nothing on 2 CPUs)
    RabbitCluster.restart(member) after a kill, back in the cluster    ~ 8 s
    RabbitCluster.stop() (members side by side)                        ~ 6 s

Pitfall: Ra saves its registry of quorum queue servers only 500 ms after a change; a node
SIGKILLed sooner after a quorum queue was declared comes back without that queue's Ra server
and the queue never gets a leader again. :meth:`RabbitNode.sync_metadata` flushes it; call
it between declaring and killing (the messages themselves are fsynced before their confirms).

No pytest dependency: scripts can import this module too. Nodes still running when the Python
process exits are SIGKILLed (their whole process group) by an ``atexit`` hook; a Python
process that is itself SIGKILLed leaves its nodes running (find them with
``ps -eo pid,args | grep -- '-home <base_dir>/home'``: the VM's command line names its HOME,
not its node name).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_SERVER = RABBITMQ_BIN / "rabbitmq-server"
RABBITMQCTL = RABBITMQ_BIN / "rabbitmqctl"
HOST = "127.0.0.1"

# Ports never handed out: epmd, the shared node's AMQP/management/distribution ports and the
# range the CLI tools (rabbitmqctl, rabbitmq-diagnostics) take their distribution port from.
_RESERVED_PORTS = {4369, 5672, 15672, 25672, *range(35672, 35683)}
_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()

_live_nodes: "set[RabbitNode]" = set()


class RabbitNodeError(RuntimeError):
    pass


# --------------------------------------------------------------------------- small helpers

def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port free on 127.0.0.1, below the ephemeral range (so that no outgoing
    connection takes it as its local port between a node's kill and its restart), not
    reserved and not already handed out by this process."""
    low_ephemeral, _ = _ephemeral_range()
    high = min(low_ephemeral - 1, 65535)
    low = 10000 if high > 11000 else 1025
    with _ports_lock:
        for _ in range(1000):
            port = random.randint(low, high)
            if port in _RESERVED_PORTS or port in _ports_handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((HOST, port))
                except OSError:
                    continue
            _ports_handed_out.add(port)
            return port
    raise RabbitNodeError("no free TCP port found")


def port_open(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, pgrp) of a process, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid pgrp ..."; comm may itself contain spaces or parentheses
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1]), int(fields[2])


def pid_alive(pid: int | None) -> bool:
    """Whether the process ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    stat = _proc_stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _start_time(pid: int) -> str | None:
    """The start time of a process (to tell it from a later one with the same PID)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()[19]


def _descendants(root: int) -> dict[int, str | None]:
    """Every live descendant of ``root`` (PID -> start time). Some of a node's helpers
    (erl_child_setup, inet_gethost, os_mon's sh) run in sessions of their own, so the process
    group alone does not find them."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[1] not in ("Z", "X"):
            children.setdefault(stat[2], []).append(pid)
    found: dict[int, str | None] = {}
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found[child] = _start_time(child)
                pending.append(child)
    return found


def _kill_leftover_processes(processes: dict[int, str | None]) -> None:
    """SIGKILL those of ``processes`` still alive (and still the same processes)."""
    for pid, started in processes.items():
        if pid_alive(pid) and _start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _process_group(pgid: int) -> list[int]:
    members = []
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[3] == pgid and stat[1] not in ("Z", "X"):
            members.append(pid)
    return members


def _wait(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise RabbitNodeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@atexit.register
def _kill_leftovers() -> None:
    for node in list(_live_nodes):
        node._kill_everything()


# --------------------------------------------------------------------------- a single node

class RabbitNode:
    """A private RabbitMQ node whose files all live under ``base_dir``.

    ``with RabbitNode(path) as node:`` starts it (unless already started) and stops it on
    exit. ``cookie`` is the Erlang cookie (random by default; nodes of one cluster share
    one); ``extra_config`` is appended to its rabbitmq.conf.
    """

    def __init__(self, base_dir, name: str | None = None, amqp_port: int | None = None,
                 management_port: int | None = None, dist_port: int | None = None, *,
                 cookie: str | None = None, extra_config: str = ""):
        self.base_dir = Path(base_dir).absolute()
        self.name = name or f"cluebus-{secrets.token_hex(4)}@localhost"
        if "@" not in self.name:
            self.name = f"{self.name}@localhost"
        self.amqp_port = amqp_port or free_port()
        self.management_port = management_port or free_port()
        self.dist_port = dist_port or free_port()
        self.cookie = cookie or secrets.token_hex(16).upper()
        self.extra_config = extra_config
        self.home = self.base_dir / "home"
        self.log_dir = self.base_dir / "log"
        self.mnesia_base = self.base_dir / "mnesia"
        self.data_dir = self.mnesia_base / self.name
        self.pid_file = self.base_dir / f"{self.name}.pid"
        self.config_file = self.base_dir / "rabbitmq.conf"
        self._process: subprocess.Popen | None = None
        self._pid: int | None = None
        self._startup_out = None
        self._lock = threading.RLock()
        self._write_files()

    # ----------------------------------------------------------------- files and environment

    def _write_files(self) -> None:
        for directory in (self.base_dir, self.home, self.log_dir, self.mnesia_base,
                          self.base_dir / "conf.d"):
            directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("\n".join([
            f"listeners.tcp.1 = {HOST}:{self.amqp_port}",
            f"management.tcp.ip = {HOST}",
            f"management.tcp.port = {self.management_port}",
            "loopback_users.guest = true",
            "log.file.level = info",
            "log.console = false",
            self.extra_config,
            "",
        ]))
        (self.base_dir / "advanced.config").write_text("[].\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("# private node: nothing from /etc/rabbitmq\n")
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.base_dir / "motd").write_text("")
        cookie_file = self.home / ".erlang.cookie"
        if cookie_file.exists():
            cookie_file.chmod(0o600)
        cookie_file.write_text(self.cookie)
        cookie_file.chmod(0o400)

    def environ(self) -> dict:
        """The environment of this node's processes (and of rabbitmqctl aimed at it)."""
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("RABBITMQ_", "ERL_"))}
        base = self.base_dir
        env.update({
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.config_file),
            "RABBITMQ_CONFIG_FILES": str(base / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MOTD_FILE": str(base / "motd"),
            "RABBITMQ_MNESIA_BASE": str(self.mnesia_base),
            "RABBITMQ_MNESIA_DIR": str(self.data_dir),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.mnesia_base / f"{self.name}-feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.mnesia_base / f"{self.name}-plugins-expand"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_CRASH_DUMP": str(self.log_dir / "erl_crash.dump"),
        })
        return env

    # ----------------------------------------------------------------- URIs and HTTP API

    def amqp_uri(self, user: str = "guest", password: str = "guest", vhost: str = "/") -> str:
        return (f"amqp://{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
                f"@{HOST}:{self.amqp_port}/{urllib.parse.quote(vhost, safe='')}")

    def management_uri(self) -> str:
        return f"http://guest:guest@{HOST}:{self.management_port}/"

    def api(self, method: str, path: str, body=None, *, timeout: float = 10,
            user: str = "guest", password: str = "guest"):
        """Call the management HTTP API (``path`` like ``"queues/%2F/q"``, without ``/api/``);
        the decoded JSON answer (None when empty). HTTP errors raise urllib.error.HTTPError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.management_port}/api/{path.lstrip('/')}", data=data, method=method,
            headers={"Content-Type": "application/json",
                     "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def queue_info(self, queue: str, vhost: str = "/") -> dict:
        return self.api("GET", f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}")

    # ----------------------------------------------------------------- state

    @property
    def pid(self) -> int | None:
        """The OS PID of this node's Erlang VM (beam.smp) while it runs, else None."""
        with self._lock:
            if self._pid is not None and pid_alive(self._pid):
                return self._pid
            return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _find_vm_pid(self) -> int | None:
        """The VM's PID: from the PID file when that names a live beam process of ours, else
        the beam child of the rabbitmq-server script found in /proc."""
        process = self._process
        if process is None:
            return None
        try:
            from_file = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            from_file = None
        if from_file is not None:
            stat = _proc_stat(from_file)
            if stat is not None and stat[0].startswith("beam") and stat[3] == process.pid:
                return from_file
        for pid in _all_pids():
            stat = _proc_stat(pid)
            if stat is not None and stat[2] == process.pid and stat[0].startswith("beam"):
                return pid
        return None

    def _amqp_ready(self) -> bool:
        import amqp  # py-amqp, kombu's transport: a real handshake and login as guest

        connection = amqp.Connection(host=f"{HOST}:{self.amqp_port}", userid="guest", password="guest",
                                     virtual_host="/", connect_timeout=2)
        try:
            connection.connect()
        except Exception:
            try:
                connection.collect()
            except Exception:
                pass
            return False
        try:
            connection.close()
        except Exception:
            pass
        return True

    def _management_ready(self) -> bool:
        try:
            overview = self.api("GET", "overview", timeout=3)
        except (OSError, ValueError):
            return False
        return bool(overview) and overview.get("node") == self.name

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 90) -> "RabbitNode":
        """Start the node in the background; return once it accepts AMQP connections (as
        guest) and its management API answers. A no-op when it already runs."""
        with self._lock:
            if self.running:
                return self
            self._reap()
            if port_open(self.amqp_port) or port_open(self.management_port):
                raise RabbitNodeError(f"{self.name}: port {self.amqp_port} or {self.management_port} already in use")
            self.pid_file.unlink(missing_ok=True)
            self._startup_out = open(self.log_dir / "startup.log", "ab")
            self._startup_out.write(f"\n==== start {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            self._startup_out.flush()
            self._process = subprocess.Popen(
                [str(RABBITMQ_SERVER)], env=self.environ(), cwd=str(self.base_dir),
                stdin=subprocess.DEVNULL, stdout=self._startup_out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
            _live_nodes.add(self)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if self._process.poll() is not None:
                    raise RabbitNodeError(
                        f"{self.name} exited with {self._process.returncode} while starting:\n"
                        f"{_tail(self.log_dir / 'startup.log')}\n{_tail(self.log_file)}\n"
                        f"(logs in {self.log_dir})")
                if self._pid is None or not pid_alive(self._pid):
                    self._pid = self._find_vm_pid()
                if self._pid is not None and self._amqp_ready() and self._management_ready():
                    return self
                if time.monotonic() >= deadline:
                    raise RabbitNodeError(f"{self.name} not ready after {timeout:g}s:\n{_tail(self.log_file)}\n"
                                          f"(logs in {self.log_dir})")
                time.sleep(0.2)
        except BaseException:
            self._kill_everything()
            raise

    def restart(self, timeout: float = 90) -> "RabbitNode":
        """Start again with the same name, ports and data (stopping it first if it runs)."""
        if self.running:
            self.stop()
        return self.start(timeout=timeout)

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL the Erlang VM by its PID; return once the process is gone and the AMQP
        port refuses connections."""
        pid = self.pid
        if pid is None:
            raise RabbitNodeError(f"{self.name} is not running")
        helpers = self._helpers()
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not pid_alive(pid), timeout, f"PID {pid} of {self.name} to go")
        self._reap(timeout, helpers)
        _wait(lambda: not port_open(self.amqp_port, timeout=0.5), timeout, f"port {self.amqp_port} to close")
        self._cleanup_after_exit()

    def stop(self, timeout: float = 60) -> None:
        """Stop this node cleanly (SIGTERM to its VM, RabbitMQ's graceful shutdown); SIGKILL
        if it has not stopped within ``timeout``. Idempotent."""
        with self._lock:
            pid = self.pid
            helpers = self._helpers()
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    _wait(lambda: not pid_alive(pid), timeout, f"{self.name} to stop")
                except RabbitNodeError:
                    self._kill_everything()
            self._reap(helpers=helpers)
            self._cleanup_after_exit()

    def _helpers(self) -> dict[int, str | None]:
        """The node's processes under the rabbitmq-server script (the VM and its helpers)."""
        return _descendants(self._process.pid) if self._process is not None else {}

    def _reap(self, timeout: float = 10, helpers: dict[int, str | None] | None = None) -> None:
        """Wait for the rabbitmq-server script (which exits once the VM has) and kill whatever
        is left of the node's processes (they normally all exit with the VM)."""
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill_group()
        if process.poll() is None:
            process.wait(timeout=10)
        if helpers:
            try:
                _wait(lambda: not any(pid_alive(pid) for pid in helpers), 5, "helper processes to exit",
                      interval=0.05)
            except RabbitNodeError:
                _kill_leftover_processes(helpers)

    def _kill_group(self) -> None:
        process = self._process
        if process is None:
            return
        if _process_group(process.pid):  # only while the group still has members of ours
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait(lambda: not _process_group(process.pid), 10, f"processes of {self.name} to go")

    def _kill_everything(self) -> None:
        """Last resort: SIGKILL the VM and its whole process group (the script, epmd is not
        in it: the shared epmd runs on its own)."""
        helpers = self._helpers()
        pid = self._pid
        if pid is not None and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._kill_group()
        _kill_leftover_processes(helpers)
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._cleanup_after_exit()

    def _cleanup_after_exit(self) -> None:
        self._pid = None
        if self._startup_out is not None:
            self._startup_out.close()
            self._startup_out = None
        _live_nodes.discard(self)

    # ----------------------------------------------------------------- tools

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def rabbitmqctl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``rabbitmqctl -n <this node> args...`` with this node's cookie and environment."""
        return subprocess.run([str(RABBITMQCTL), "-n", self.name, *args], env=self.environ(),
                              cwd=str(self.base_dir), capture_output=True, text=True,
                              timeout=timeout, check=check)

    def sync_metadata(self) -> None:
        """Make what the node has just registered survive a SIGKILL: ``dets:sync`` every DETS
        table of the node (through ``rabbitmqctl eval``, ~0.7 s here).

        Ra keeps its registry of quorum queue servers (``names.dets``) and their metadata in
        DETS tables that it saves only 500 ms after a change (``auto_save``); a node killed
        sooner after a quorum queue was declared restarts without that queue's Ra server and
        the queue never gets a leader again ("leader not known"), although its messages are
        on disk. Call this between declaring a quorum queue and killing the node."""
        result = self.rabbitmqctl("eval", "[{T, dets:sync(T)} || T <- dets:all()].")
        if "error" in result.stdout:
            raise RabbitNodeError(f"dets:sync failed on {self.name}: {result.stdout}")

    def __enter__(self) -> "RabbitNode":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RabbitNode {self.name} amqp={self.amqp_port} http={self.management_port} pid={self.pid}>"

    __hash__ = object.__hash__


# --------------------------------------------------------------------------- a cluster

class RabbitCluster:
    """``size`` private nodes joined into one cluster (each under ``base_dir/node<i>``)."""

    def __init__(self, base_dir, size: int = 3, *, name_prefix: str | None = None):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.base_dir = Path(base_dir).absolute()
        prefix = name_prefix or f"cluebus-{secrets.token_hex(3)}"
        cookie = secrets.token_hex(16).upper()
        names = [f"{prefix}-{index}@localhost" for index in range(1, size + 1)]
        seed = names[0]
        self.nodes: list[RabbitNode] = []
        for index, name in enumerate(names, start=1):
            # The first node boots alone; the others join it on their first boot. A restarted
            # node rejoins from its own data (peer discovery only runs on a blank node).
            extra = "" if index == 1 else "\n".join([
                "cluster_formation.peer_discovery_backend = classic_config",
                f"cluster_formation.classic_config.nodes.1 = {seed}",
            ])
            self.nodes.append(RabbitNode(self.base_dir / f"node{index}", name=name, cookie=cookie,
                                         extra_config=extra))

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 180) -> "RabbitCluster":
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start(timeout=max(deadline - time.monotonic(), 1))
            self.wait_for_running(self.nodes, timeout=max(deadline - time.monotonic(), 1))
        except BaseException:
            self.stop()
            raise
        return self

    def node(self, node) -> RabbitNode:
        """A member by RabbitNode, index (0-based) or node name."""
        if isinstance(node, RabbitNode):
            if node not in self.nodes:
                raise KeyError(node)
            return node
        if isinstance(node, int):
            return self.nodes[node]
        for member in self.nodes:
            if member.name == node or member.name.split("@")[0] == node:
                return member
        raise KeyError(node)

    def kill(self, node) -> RabbitNode:
        member = self.node(node)
        member.kill()
        return member

    def restart(self, node, timeout: float = 90) -> RabbitNode:
        """Start a killed or stopped member again; return once it is back in the cluster."""
        member = self.node(node)
        member.restart(timeout=timeout)
        self.wait_for_running([member], timeout=timeout)
        return member

    def stop(self) -> None:
        """Stop every member (side by side). Idempotent."""
        errors = []

        def stop(member):
            try:
                member.stop()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
                member._kill_everything()

        threads = [threading.Thread(target=stop, args=(member,)) for member in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def __enter__(self) -> "RabbitCluster":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ----------------------------------------------------------------- inspection

    @property
    def running_nodes(self) -> list[RabbitNode]:
        return [member for member in self.nodes if member.running]

    def amqp_uris(self, user: str = "guest", password: str = "guest", vhost: str = "/") -> str:
        """Every member's AMQP URI, ``;``-separated (kombu's failover syntax)."""
        return ";".join(member.amqp_uri(user, password, vhost) for member in self.nodes)

    def api(self, method: str, path: str, body=None, **kwargs):
        """The management API of the first running member that answers."""
        last_error: Exception | None = None
        for member in self.running_nodes:
            try:
                return member.api(method, path, body, **kwargs)
            except urllib.error.HTTPError:
                raise
            except OSError as error:
                last_error = error
        raise RabbitNodeError(f"no member's management API answers ({last_error})")

    def cluster_status(self) -> dict:
        """Node name -> running, as the cluster itself sees it (management ``/api/nodes``)."""
        return {entry["name"]: bool(entry.get("running")) for entry in self.api("GET", "nodes")}

    def wait_for_running(self, members, timeout: float = 60) -> None:
        """Wait until the cluster sees every one of ``members`` as a running member."""
        names = {self.node(member).name for member in members}

        def all_running():
            try:
                status = self.cluster_status()
            except (OSError, ValueError, RabbitNodeError):
                return False
            return all(status.get(name) for name in names)
        _wait(all_running, timeout, f"{sorted(names)} to run in the cluster", interval=0.2)

    def queue_info(self, queue: str, vhost: str = "/") -> dict:
        return self.api("GET", f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}")

    def sync_metadata(self) -> None:
        """:meth:`RabbitNode.sync_metadata` on every running member."""
        for member in self.running_nodes:
            member.sync_metadata()

    def leader(self, queue: str, vhost: str = "/") -> RabbitNode:
        """The member leading quorum queue ``queue`` (management API ``leader``)."""
        return self.node(self.queue_info(queue, vhost)["leader"])

    def wait_for_leader(self, queue: str, vhost: str = "/", *, exclude=(), timeout: float = 60) -> RabbitNode:
        """Wait until ``queue`` has a leader on a running member not in ``exclude``; return it."""
        excluded = {self.node(member).name for member in exclude}

        def elected():
            try:
                name = self.queue_info(queue, vhost).get("leader")
            except (OSError, ValueError, RabbitNodeError):
                return None
            if not name or name in excluded:
                return None
            member = self.node(name)
            return member if member.running else None
        return _wait(elected, timeout, f"a leader for queue {queue!r}", interval=0.2)

    def wait_for_online(self, queue: str, vhost: str = "/", *, members=None, timeout: float = 60) -> dict:
        """Wait until every one of ``members`` (default: all) is an online member of quorum
        queue ``queue`` (management API ``online``); return the queue's information."""
        names = {self.node(member).name for member in (self.nodes if members is None else members)}

        def online():
            try:
                info = self.queue_info(queue, vhost)
            except (OSError, ValueError, RabbitNodeError):
                return None
            return info if names <= set(info.get("online") or ()) else None
        return _wait(online, timeout, f"{sorted(names)} online in queue {queue!r}", interval=0.2)
