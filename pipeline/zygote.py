"""Notebook kernels forked from one pre-imported process (a "zygote"), on Linux.

A fresh Jupyter kernel spends ~2 s of CPU importing ipykernel, pandas, matplotlib and the
plotting helpers before it runs a line of a report. :func:`zygote` starts one process that
imports all that once (ipykernel and :data:`pipeline.report.PRELOAD`) and then only waits;
each report's kernel is a ``fork()`` of it: a new process with its own memory (nothing a
report does is seen by another), which starts in milliseconds.

jupyter_client still starts and stops every kernel as a process of its own: the command it
runs (:func:`kernel_manager`) is a tiny *launcher* (this file run as a script, standard
library only, ~20 ms). The launcher sends its command line, folder, environment and
stdin/stdout/stderr (``SCM_RIGHTS``) over a Unix socket to the zygote, which forks a
child; the child takes over those, becomes a session of its own and runs
``IPKernelApp`` with the same arguments as ``python -m ipykernel_launcher``. The launcher
then stands for the kernel: it forwards SIGTERM/SIGINT/SIGHUP to it and exits with it,
and the kernel ends when its launcher ends, whatever killed it (jupyter_client's
``shutdown_kernel(now=True)`` is a SIGKILL of the launcher): the child watches its socket
to the launcher and kills its process group at end-of-file.

Anything that would make a forked kernel differ from a fresh one makes the launcher run
the fresh one instead (``exec`` of the original command): another command than this
Python's ``ipykernel_launcher``, another folder or environment (``JPY_*`` aside) than the
zygote's, a Python thread in the zygote, or no zygote answering. A forked kernel gets the
``sys.path``, ``sys.argv``, folder, environment and signal handlers of a fresh one;
``random`` and ``numpy.random`` are reseeded from the OS as in a fresh process. What it
shares with its siblings is the zygote's hash seed (``PYTHONHASHSEED``: fixed when set,
else drawn once per render instead of once per kernel).

The zygote ends when the process that started it closes its lifeline (its stdin) or dies;
it then kills the kernels still alive and reaps them. Where ``fork`` or ``SCM_RIGHTS``
are not available (not Linux) nothing here is used: every kernel is a fresh process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the launcher (this file run as a script) imports only the stdlib
    from jupyter_client.manager import KernelManager

#: The command jupyter_client runs for a Python kernel (``python`` is made ``sys.executable``).
KERNEL_MODULE = "ipykernel_launcher"
#: Signals the launcher passes on to its kernel (jupyter_client's interrupt and terminate).
FORWARDED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                  if hasattr(signal, name))  # this module is imported on Windows too
#: What jupyter_client adds to a kernel's environment (the pid of the process starting it);
#: the zygote is started with it too, since ipykernel reads it at import.
PARENT_ENV = "JPY_PARENT_PID"


def available() -> bool:
    """Whether kernels can be forked here (Linux: ``fork``, ``SCM_RIGHTS``, ``setsid``)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


# --------------------------------------------------------------------------------------
# The render process: start the zygote, make kernel managers that launch through it.


@contextmanager
def zygote(folder: str | Path, cwd: str | Path, preload: Sequence[str]) -> Iterator[str]:
    """Run a zygote for the kernels started in this block; yields its socket path.

    ``folder`` holds the socket (the render's temporary folder); ``cwd`` is the kernels'
    folder; ``preload`` the modules imported before forking. Start kernels with
    :func:`kernel_manager` under the same environment as this block's start (the zygote
    is started with it). On leaving, the zygote kills the kernels still running and is
    waited for, so no process of it outlives the block.
    """
    import subprocess

    path = str(Path(folder) / "zygote.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        # Bound and listening before the zygote exists: a launcher that connects while
        # the zygote still imports waits in the backlog instead of finding nothing.
        listener.bind(path)
        listener.listen(64)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.zygote", "serve", str(listener.fileno()),
             ",".join(preload)],
            cwd=str(cwd), stdin=subprocess.PIPE, pass_fds=(listener.fileno(),),
            env={**os.environ, PARENT_ENV: str(os.getpid())})
    finally:
        listener.close()
    try:
        yield path
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the lifeline: the zygote kills its kernels and exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launcher_command(socket_path: str, cmd: Sequence[str]) -> list[str]:
    """The launcher's command line for kernel command ``cmd`` (``-I -S``: nothing but the
    standard library is read, the launcher starts in milliseconds)."""
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "launch", socket_path,
            *cmd]


def kernel_manager(socket_path: str, base: type[KernelManager] | None = None,
                   **kwargs: Any) -> KernelManager:
    """A ``KernelManager`` (``kwargs`` as for it; ``base``, a subclass of it, to build on)
    whose kernels are forked by the zygote listening at ``socket_path``."""
    from jupyter_client.manager import KernelManager

    class ForkedKernelManager(base or KernelManager):  # type: ignore[misc]
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return launcher_command(socket_path, super().format_kernel_cmd(extra_arguments))

    return ForkedKernelManager(**kwargs)


# --------------------------------------------------------------------------------------
# The launcher: the process jupyter_client starts and signals for each kernel.


def launch(socket_path: str, cmd: list[str]) -> None:
    """Have the zygote fork the kernel ``cmd`` and stand for it; or run ``cmd`` itself."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    request = {"argv": cmd, "cwd": os.getcwd(), "env": dict(os.environ)}
    try:
        conn.connect(socket_path)
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
        forked = conn.recv(64) == b"forked"
    except OSError:
        forked = False
    if not forked:
        conn.close()
        os.execv(cmd[0], cmd)

    def forward(signum: int, frame: object) -> None:
        try:
            conn.send(b"signal %d" % signum)
        except OSError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    parent = os.getppid()
    conn.settimeout(1.0)
    while True:
        try:
            message = conn.recv(64)
        except TimeoutError:
            # The kernel's own parent poller (JPY_PARENT_PID) watches the zygote, not the
            # render process; the launcher watches that one in its place.
            if os.getppid() != parent:
                sys.exit(1)
            continue
        if not message:  # the kernel died without saying (killed)
            sys.exit(1)
        if message.startswith(b"exit "):
            sys.exit(int(message[5:]))


# --------------------------------------------------------------------------------------
# The zygote.


def _sys_path_of_kernel() -> None:
    """``sys.path`` as a fresh kernel has it while its ``exec_lines`` run: without the
    folder ``-m`` put first (``ipykernel_launcher`` removes it), with ``''`` before the
    first site-packages folder (IPython's ``init_path``)."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


def _import(preload: Sequence[str]) -> None:
    import importlib.util

    from ipykernel import kernelapp  # noqa: F401  (what every kernel imports first)
    from IPython.core.shellapp import InteractiveShellApp

    before = list(sys.path)
    InteractiveShellApp.init_path(InteractiveShellApp())  # as the kernel's init_path
    try:
        for name in preload:
            if importlib.util.find_spec(name):
                __import__(name)
    except Exception:  # the kernel's exec_lines meet (and show) it again
        pass
    finally:
        sys.path[:] = before  # the kernel's own init_path puts '' back


def serve(listener_fd: int, preload: Sequence[str]) -> None:
    """The zygote: import, then fork a kernel for each launcher until the lifeline closes."""
    import selectors
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C ends it through its lifeline
    _sys_path_of_kernel()
    listener = socket.socket(fileno=listener_fd)
    _import(preload)
    import gc

    gc.freeze()  # what the zygote holds: never scanned by a kernel's collector (no copy)
    env = dict(os.environ)
    here = os.getcwd()
    kernels: set[int] = set()
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    try:
        while True:
            ready = selector.select(timeout=1.0)
            _reap(kernels, block=False)
            for key, _ in ready:
                if key.fileobj != listener:
                    return  # lifeline closed (end of render, or its process died)
                conn, _ = listener.accept()
                pid = _fork_kernel(conn, (listener, selector), env, here,
                                   threading.active_count() == 1)
                if pid:
                    kernels.add(pid)
    finally:
        for pid in kernels:
            _kill_group(pid)
        _reap(kernels, block=True)


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):  # its own group once it has called setsid
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        except PermissionError:
            return
        return


def _reap(kernels: set[int], block: bool) -> None:
    for pid in list(kernels):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            kernels.discard(pid)


def _fork_kernel(conn: socket.socket, zygote_only: Sequence[Any], env: dict[str, str],
                 here: str, single_threaded: bool) -> int:
    """Fork a kernel for the launcher at ``conn``; its pid, or 0 (launcher told to exec)."""
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(message)
        argv = request["argv"]
        if not (single_threaded and len(fds) == 3 and request["cwd"] == here
                and os.path.abspath(argv[0]) == os.path.abspath(sys.executable)
                and argv[1:3] == ["-m", KERNEL_MODULE]
                and request["env"] == env):
            conn.send(b"exec")
            return 0
        pid = os.fork()
        if pid == 0:
            try:
                for own in zygote_only:  # the listener and its selector: not the kernel's
                    own.close()
                _become_kernel(conn, fds, request)
            finally:
                os._exit(1)
        conn.send(b"forked")
        return pid
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _become_kernel(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
    """In the forked child: take the launcher's place and run the kernel; never returns."""
    import atexit
    import threading

    os.setsid()  # a group of its own, as jupyter_client's start_new_session
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _reseed()
    launcher = request["argv"]
    import importlib.util

    spec = importlib.util.find_spec(KERNEL_MODULE)
    sys.argv = [spec.origin if spec and spec.origin else KERNEL_MODULE, *launcher[3:]]
    sys.orig_argv = list(launcher)

    def watch() -> None:
        while True:
            try:
                message = conn.recv(64)
            except OSError:
                message = b""
            if not message:  # the launcher is gone: so is this kernel, with its children
                os.killpg(0, signal.SIGKILL)
            if message.startswith(b"signal "):
                os.killpg(0, int(message[7:]))

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
    code = 1
    try:
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # as the interpreter would at the end of a kernel
            sys.stdout.flush()
            sys.stderr.flush()
            conn.send(b"exit %d" % code)
        finally:
            os._exit(code)


def _reseed() -> None:
    """Seed the global random generators from the OS, as a fresh interpreter would have."""
    if "random" in sys.modules:
        import random

        random.seed()
    if "numpy.random" in sys.modules:
        import numpy as np

        np.random.seed()  # noqa: NPY002  (the legacy global state is what is reseeded)


def main(argv: list[str]) -> None:
    """``launch SOCKET CMD...`` (the launcher) or ``serve FD MODULES`` (the zygote)."""
    if argv[0] == "launch":
        launch(argv[1], argv[2:])
    elif argv[0] == "serve":
        serve(int(argv[1]), [m for m in argv[2].split(",") if m])
    else:
        sys.exit(f"usage: zygote.py launch SOCKET CMD... | serve FD MODULES (not {argv[0]})")


if __name__ == "__main__":
    if __package__:  # python -m pipeline.zygote: run from the imported module itself
        from pipeline.zygote import main as _main

        _main(sys.argv[1:])
    else:
        main(sys.argv[1:])
