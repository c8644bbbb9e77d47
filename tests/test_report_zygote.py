"""Kernels forked from a zygote (pipeline/zygote.py): same bytes and state as fresh kernels,
one process per report, and no process outlives the rendering, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from pipeline import zygote
from pipeline.report import _kernel_environment, render_many

pytestmark = pytest.mark.skipif(not zygote.available() or not Path("/proc").is_dir(),
                                reason="kernels are forked on Linux only")

#: What a kernel would show differently if forking changed it: folder, command line,
#: import path, environment, where modules come from, plotting backend, signal handlers,
#: process group, hash seed, preloaded modules.
PROBE = '''# %% tags=["parameters"]
answer = 0

# %%
import os, signal, sys, threading
from pathlib import Path
import matplotlib
import matplotlib.pyplot as plt
import pipeline.tables
print("cwd", os.getcwd())
print("argv", Path(sys.argv[0]).name, sys.argv[1], len(sys.argv), sys.orig_argv[1:3])
print("path", sys.path)
print("env", sorted(os.environ.items()))
print("files", pipeline.tables.__file__, matplotlib.__file__)
print("backend", matplotlib.get_backend(), matplotlib.rcParams["figure.dpi"])
print("sigint", signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
print("own session", os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())
print("hash", hash("alliance"), "answer", answer)
print("preloaded", sorted(m for m in ("pandas", "pipeline.figures") if m in sys.modules))
print("threads", sorted(t.name for t in threading.enumerate() if t.name != "launcher-watch"))
Path(f"forked-{os.getpid()}.txt").write_text(str("pipeline.zygote" in sys.modules))
plt.plot([1, 2], [answer, 1]); plt.show()
'''


def _sources(folder: Path, text: str, names: tuple[str, ...]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.py"
        path.write_text(text)
        paths.append(path)
    return paths


def _forked_flags(folder: Path) -> list[str]:
    """What each kernel that ran in ``folder`` wrote: whether it was forked (then removed)."""
    flags = []
    for probe in folder.glob("forked-*.txt"):
        flags.append(probe.read_text())
        probe.unlink()
    return flags


def test_forked_kernels_give_the_bytes_and_state_of_fresh_kernels(tmp_path: Path) -> None:
    sources = _sources(tmp_path / "nb", PROBE, ("one", "two", "three"))
    forked = render_many([(s, tmp_path / "forked" / f"{s.stem}.html") for s in sources],
                         {"answer": 5}, cwd=tmp_path)
    assert _forked_flags(tmp_path) == ["True"] * 3  # forked indeed, not the fallback
    fresh = render_many([(s, tmp_path / "fresh" / f"{s.stem}.html") for s in sources],
                        {"answer": 5}, cwd=tmp_path, fork=False)
    assert _forked_flags(tmp_path) == ["False"] * 3
    for a, b in zip(forked, fresh, strict=True):
        assert a.read_bytes() == b.read_bytes()
    html = forked[0].read_text()
    assert "own session True True" in html and "answer 5" in html
    assert "data:image/png;base64" in html


LEAK = '''# %% tags=["parameters"]
answer = 0

# %%
import os, sys
import pipeline.report
print("before", "leaked" in globals(), hasattr(pipeline.report, "LEAKED"),
      "LEAKED" in os.environ, "forked", "pipeline.zygote" in sys.modules)
leaked = 1
pipeline.report.LEAKED = 1
os.environ["LEAKED"] = "1"
'''


def test_each_report_has_a_kernel_of_its_own(tmp_path: Path) -> None:
    sources = _sources(tmp_path, LEAK, ("first", "second", "third"))
    done = render_many([(s, tmp_path / "out" / f"{s.stem}.html") for s in sources],
                       {"answer": 1}, cwd=tmp_path, concurrent=1, ahead=0)
    for html in done:  # what the previous report set is not there in the next one
        assert "before False False False forked True" in html.read_text()


def _marked(mark: str, zombies: bool = True) -> dict[int, int]:
    """Processes (other than this one) whose environment carries ``mark``: pid -> ppid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark.encode() not in (entry / "environ").read_bytes():
                continue
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if zombies or state not in ("Z", "X"):
            found[int(entry.name)] = int(ppid)
    return found


def _wait_until(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


@pytest.fixture
def mark(monkeypatch: pytest.MonkeyPatch) -> str:
    """A variable every process started from here inherits, to find them in /proc."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("ZYGOTE_TEST_MARK", value)
    return f"ZYGOTE_TEST_MARK={value}"


def test_no_process_outlives_rendering_also_after_a_failing_report(
        tmp_path: Path, mark: str) -> None:
    import papermill

    good = _sources(tmp_path, LEAK, ("good", "other"))
    render_many([(s, tmp_path / "out" / f"{s.stem}.html") for s in good],
                {"answer": 1}, cwd=tmp_path)
    assert _marked(mark) == {}  # zygote, launchers and kernels: ended and reaped
    broken = tmp_path / "broken.py"
    broken.write_text(LEAK + '\n# %%\nraise RuntimeError("forced failure")\n')
    with pytest.raises(papermill.PapermillExecutionError, match="forced failure"):
        render_many([(broken, tmp_path / "x" / "broken.html"),
                     *((s, tmp_path / "x" / f"{s.stem}.html") for s in good)],
                    {"answer": 1}, cwd=tmp_path, ahead=2)
    assert _marked(mark) == {}


def test_the_launcher_forwards_interrupts_and_its_kill_ends_the_kernel(mark: str) -> None:
    with _kernel_environment(), tempfile.TemporaryDirectory() as tmp, \
            zygote.zygote(tmp, tmp, ()) as socket_path:
        km = zygote.kernel_manager(socket_path, kernel_name="python3", transport="ipc",
                                   ip=str(Path(tmp) / "k"))
        km.start_kernel(cwd=tmp)
        kc = km.client()
        try:
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            procs = _marked(mark)
            zygote_pid = next(p for p, parent in procs.items() if parent == os.getpid()
                              and p != km.provisioner.pid)  # type: ignore[union-attr]
            kernel = [p for p, parent in procs.items() if parent == zygote_pid]
            assert len(kernel) == 1
            # An interrupt (jupyter_client signals the launcher's group) reaches the cell.
            msg_id = kc.execute("import time; print('asleep', flush=True); time.sleep(60)")
            # Wait for this cell's own print: a stream message from start-up (a
            # warning on stderr, say) would let the interrupt reach an idle kernel,
            # which ignores it, and the reply would then come only after the sleep.
            while True:
                msg = kc.get_iopub_msg(timeout=30)
                if (msg["msg_type"] == "stream"
                        and msg["parent_header"].get("msg_id") == msg_id
                        and "asleep" in msg["content"]["text"]):
                    break  # the cell runs
            km.interrupt_kernel()
            # Replies to wait_for_ready's repeated kernel_info requests may still be
            # queued before the cell's own reply.
            reply = kc.get_shell_msg(timeout=30)
            while reply["parent_header"].get("msg_id") != msg_id:
                assert reply["msg_type"] == "kernel_info_reply", reply["msg_type"]
                reply = kc.get_shell_msg(timeout=30)
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            # SIGKILL of the launcher (shutdown_kernel(now=True) does that): kernel ends.
            os.kill(km.provisioner.pid, signal.SIGKILL)  # type: ignore[union-attr]
            _wait_until(lambda: kernel[0] not in _marked(mark, zombies=False))
            assert kernel[0] not in _marked(mark, zombies=False)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    assert _marked(mark) == {}


KILLED = '''
import sys
from pathlib import Path
from pipeline.report import render_many

folder = Path(sys.argv[1])
render_many([(folder / f"{n}.py", folder / f"{n}.html") for n in ("a", "b", "c")],
            {}, cwd=folder)
'''


def test_zygote_and_kernels_end_when_the_render_process_is_killed(
        tmp_path: Path, mark: str) -> None:
    _sources(tmp_path, "# %%\nimport time\ntime.sleep(120)\n", ("a", "b", "c"))
    script = tmp_path / "run.py"
    script.write_text(KILLED)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            env={**os.environ, "PYTHONPATH": str(root)})
    try:
        # Running: the render process, its zygote, launchers and forked kernels.
        def forked() -> bool:
            procs = _marked(mark, zombies=False)
            return any(procs.get(parent) == proc.pid for parent in procs.values())

        _wait_until(forked, 120)
        assert forked()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _wait_until(lambda: not _marked(mark, zombies=False))
    survivors = _marked(mark, zombies=False)
    for pid in survivors:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "processes outlived the killed render"


def test_a_render_leaves_no_socket_open(tmp_path: Path) -> None:
    """nbclient leaves the channels of a kernel client it did not start the manager of open;
    the kernel manager closes them (else four ResourceWarnings a report, at some later
    garbage collection: in the middle of another test's or stage's run)."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()  # what earlier tests left behind
    sources = _sources(tmp_path, "# %%\nprint(1)\n", ("a", "b"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_many([(s, tmp_path / f"{s.stem}.html") for s in sources], {}, cwd=tmp_path)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
