"""Run one untrusted job (``runner.py`` in a work folder) with limits, and leave no process behind.

Two modes:

* **bubblewrap** (``bwrap``, Debian package ``bubblewrap``): a read-only view of the file system, a
  private ``/tmp`` holding only this job's folder, the submissions / output / hidden tests / teacher's
  chapter hidden, no network, own PID namespace (it cannot see the grader's processes), user ``nobody``.
* **fallback** (no working ``bwrap``, or ``BOOK_GRADE_NO_BWRAP=1``): a temporary folder, a scrubbed
  environment, resource limits, its own session, user ``nobody`` when the grader runs as root. The file
  system and network stay visible: the grader warns.

In both modes the job gets a wall-clock limit, a memory limit, a cap on output, and every process it
started (also detached ones) is killed when it ends: the grader makes itself a *child subreaper*, so
orphans are re-parented to it and can be found.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
NOBODY = 65534
INSIDE = "/tmp/work"
# What the runner writes to its output just before the probes: the feedback ends there. The channel may
# overtake the output pipe on a loaded machine, so the grader waits for this mark before cutting (and only
# then sends the probes, so that nothing a probe prints can be read before the cut).
OUTPUT_END = b"\n\x1e[end of the notebook's output]\x1e\n"
OUTPUT_END_WAIT = 10.0  # seconds; a submission that silenced its output may delay its probes this long


@dataclass
class Limits:
    seconds: float = 600          # wall clock for the whole notebook
    memory_mb: int = 4096         # address space of each process
    output_bytes: int = 200_000   # printed output kept (the rest is counted and dropped)
    channel_bytes: int = 50_000_000
    file_mb: int = 512            # largest file a job may write


@dataclass
class Outcome:
    output: str = ""
    output_dropped: int = 0
    messages: list = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    output_at_probes: int | None = None
    output_ended: threading.Event = field(default_factory=threading.Event)  # the runner's OUTPUT_END was read

    def feedback_output(self) -> str:
        """What was printed before the probes started (nothing printed later may be shown)."""
        out = self.output if self.output_at_probes is None else self.output[:self.output_at_probes]
        return out.replace(OUTPUT_END.decode(), "\n")


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot be used here (None when it works)."""
    if os.environ.get("BOOK_GRADE_NO_BWRAP", "").strip() not in ("", "0"):
        return "disabled by BOOK_GRADE_NO_BWRAP"
    exe = shutil.which("bwrap")
    if not exe:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        r = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap does not start: {e}"
    if r.returncode:
        return f"bwrap does not work here (no user namespaces?): {r.stderr.decode(errors='replace').strip()}"
    return None


def _can_drop_to_nobody(python: str) -> bool:
    """Only root can switch user, and only if ``nobody`` can still run the interpreter and import book."""
    if os.geteuid() != 0:
        return False
    try:
        r = subprocess.run([python, "-c", "import IPython, book"], preexec_fn=_as_nobody, capture_output=True,
                           timeout=120, cwd="/")
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


class Sandbox:
    """Runs jobs; one instance per grading run (it checks the machine once)."""

    def __init__(self, hide: list[Path], python: str | None = None, limits: Limits | None = None):
        self.python = python or sys.executable
        self.limits = limits or Limits()
        self.hide = [Path(p).resolve() for p in hide if p is not None]
        self.problem = bwrap_problem()
        self.mode = "bubblewrap" if self.problem is None else "fallback"
        self.drop_user = self.mode == "fallback" and _can_drop_to_nobody(self.python)
        self.reference = None  # a file to make unreadable inside (the self-checks' reference answers)

    def describe(self) -> str:
        if self.mode == "bubblewrap":
            return ("bubblewrap: read-only file system, private /tmp, no network, own PID namespace, "
                    "submissions, outputs and hidden tests not visible")
        who = "as user nobody" if self.drop_user else "as the grader's own user"
        return (f"fallback ({self.problem}): temporary folder, scrubbed environment, limits, {who}; the file "
                "system and network are NOT hidden from submissions -- install bubblewrap for real isolation")

    # ----------------------------------------------------------------- command lines
    def _bwrap_args(self, job: Path) -> list[str]:
        args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", str(NOBODY), "--gid", str(NOBODY)]
        for p in self._needed_under_tmp():  # the private /tmp would hide them (a checkout or venv in /tmp)
            args += ["--ro-bind", str(p), str(p)]
        for p in self.hide:  # hidden tests, submissions, outputs, the teacher's chapter, other jobs
            if p.is_dir():
                args += ["--tmpfs", str(p)]
            elif p.exists():
                args += ["--ro-bind", "/dev/null", str(p)]
        if self.reference is not None and Path(self.reference).exists():
            args += ["--ro-bind", "/dev/null", str(self.reference)]
        return args + ["--bind", str(job), INSIDE, "--chdir", INSIDE]

    def _needed_under_tmp(self) -> list[Path]:
        """What the job's Python needs that lies below /tmp: its venv and the book's code and data."""
        import importlib.util

        import book
        assets = importlib.util.find_spec("book_assets")  # a namespace package: no __file__
        needed = [Path(self.python).absolute().parent.parent, Path(book.__file__).resolve().parent,
                  *(Path(p).resolve() for p in (assets.submodule_search_locations or []) if assets)]
        return [p for p in needed if Path("/tmp") in p.parents and p.is_dir()]

    def _env(self, home: str) -> dict:
        """Only what Python needs: no paths of the grader, its arguments or its secrets."""
        keep = {k: os.environ[k] for k in ("LANG", "LC_ALL", "BOOK_DEVICE") if k in os.environ}
        return {**keep, "PATH": os.path.dirname(self.python) + ":/usr/local/bin:/usr/bin:/bin", "HOME": home,
                "TMPDIR": home, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                "BOOK_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
                # grade on the CPU: the same device for the teacher's run and every submission, and a
                # CUDA context would not fit under the address-space limit
                "CUDA_VISIBLE_DEVICES": ""}

    def _limits(self):
        mem = self.limits.memory_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = self.limits.file_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.drop_user:
            resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))
            _as_nobody()

    # ----------------------------------------------------------------- one job
    def run(self, job: Path, probes_bytes: bytes) -> Outcome:
        """Run ``runner.py`` in ``job``; send ``probes_bytes`` on stdin once it asks for probes."""
        chan_r, chan_w = os.pipe()
        pass_fds = [chan_w]
        if self.mode == "bubblewrap":
            arg_r, arg_w = os.pipe()  # bwrap's options go through a pipe: not visible in /proc/*/cmdline
            os.write(arg_w, b"".join(a.encode() + b"\0" for a in self._bwrap_args(job)))
            os.close(arg_w)
            pass_fds.append(arg_r)
            cmd = ["bwrap", "--args", str(arg_r), self.python, "-u", "-B", f"{INSIDE}/runner.py", str(chan_w)]
            env, cwd = self._env(INSIDE), "/"
        else:
            arg_r = None
            if self.drop_user:
                os.chown(job, NOBODY, NOBODY)
            cmd = [self.python, "-u", "-B", str(job / "runner.py"), str(chan_w)]
            env, cwd = self._env(str(job)), str(job)
        before = _descendants()
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=pass_fds, env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=self._limits)
        os.close(chan_w)
        if arg_r is not None:
            os.close(arg_r)
        out = Outcome()
        readers = [threading.Thread(target=self._read_output, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=self._read_channel, args=(chan_r, out, proc), daemon=True)]
        for t in readers:
            t.start()
        self._probes_bytes = probes_bytes
        try:
            proc.wait(timeout=self.limits.seconds)
        except subprocess.TimeoutExpired:
            out.timed_out = True
        finally:
            self._kill(proc, before)
        for t in readers:
            t.join(timeout=10)
        out.returncode = proc.returncode
        out.seconds = time.monotonic() - start
        return out

    def _read_output(self, stream, out: Outcome):
        kept, tail = bytearray(), b""
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            ended = OUTPUT_END in tail + chunk  # also when the kept output is full, or the mark spans two reads
            tail = (tail + chunk)[-len(OUTPUT_END):]
            room = self.limits.output_bytes - len(kept)
            kept += chunk[:max(room, 0)]
            out.output_dropped += max(len(chunk) - max(room, 0), 0)
            out.output = kept.decode("utf-8", errors="replace")
            if ended:  # only now: the channel's reader cuts at len(out.output)
                out.output_ended.set()
        out.output_ended.set()  # the pipe closed: nothing more to wait for
        stream.close()

    def _read_channel(self, fd: int, out: Outcome, proc):
        import json
        buf, total = b"", 0
        with os.fdopen(fd, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > self.limits.channel_bytes:
                    out.messages.append({"channel": "too much data; the rest was dropped"})
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue  # not ours, or garbled by student code: ignore
                    if not isinstance(msg, dict):
                        continue
                    out.messages.append(msg)
                    if msg.get("phase") == "probes":
                        # Everything read before the probes are sent was printed before them: cut there.
                        out.output_ended.wait(OUTPUT_END_WAIT)
                        out.output_at_probes = len(out.output)  # later output may show hidden inputs
                        self._send_probes(proc)

    def _send_probes(self, proc):
        try:
            proc.stdin.write(self._probes_bytes)
            proc.stdin.close()
        except (OSError, ValueError):
            pass  # the job died or closed its stdin: its probes simply report nothing

    def _kill(self, proc, before: set):
        """Kill the job's process group, then every other process it left behind (re-parented to us)."""
        for _ in range(50):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            stray = _descendants() - before
            for pid in stray:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            _reap(stray)
            if proc.poll() is not None and not (_descendants() - before):
                return
            time.sleep(0.05)


def _descendants() -> set[int]:
    """PIDs of all live descendants of this process (zombies excluded)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if stat[0] != b"Z":
            children.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = set(), [os.getpid()]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _reap(pids):
    """Collect killed orphans (now our children) so that they do not stay as zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: its own parent reaps it


class subreaper:
    """Context: orphans of jobs become our children (so they can be found and killed), restored after."""

    def __enter__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        old = ctypes.c_int(0)
        self.libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(old), 0, 0, 0)
        self.old = old.value
        self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return self

    def __exit__(self, *exc):
        self.libc.prctl(PR_SET_CHILD_SUBREAPER, self.old, 0, 0, 0)


def nobody_exists() -> bool:
    try:
        pwd.getpwuid(NOBODY)
        return True
    except KeyError:
        return False
