"""How every ``NotebookClient`` of the tests and tools starts its kernel: ``config=Config(kernel_config())``.

Standard library only, so that any Python that runs a notebook client can import it (the Colab-like
runtime, a GPU machine's image): ``tools/prefill_cache.py``, ``tools/gpu_run.py``, ``tests/colab``,
``tests/student``.
"""
import os
import tempfile
import uuid


def kernel_config() -> dict:
    """``config=`` for one ``NotebookClient`` of ours: a kernel that listens on Unix sockets, not TCP ports.

    Over TCP, jupyter_client picks free ports, closes them, writes them into the connection file, and the
    kernel binds them about a second later. With two executions at once another connection can take one of
    those ports in between, and the kernel dies before it starts ("ZMQError: Address already in use ...
    Kernel died before replying to kernel_info"; jupyter/jupyter_client#154, open since 2016). CI failed on
    exactly that once. An ipc socket is a file: a fresh absolute prefix per call leaves nothing to race for.
    (Absolute, because jupyter_client's default prefix, "kernel-ipc", is relative: it resolves in the client's
    folder on one side and in the kernel's on the other, which hangs any notebook run in its own folder.)
    Call it once per client. TCP stays where ipc cannot work: not POSIX, or a temporary folder so deep that
    the socket's path would pass what a Unix socket address holds (103 bytes on macOS and BSD, 107 on Linux).
    A plain dict, so that it also crosses into another Python as JSON (``traitlets.config.Config(it)``).
    """
    prefix = os.path.join(tempfile.gettempdir(), f"kernel-{uuid.uuid4()}-ipc")   # the kernel adds -1 ... -5
    if os.name != "posix" or len(os.fsencode(prefix)) + len("-5") > 103:
        return {"KernelManager": {"transport": "tcp"}}
    return {"KernelManager": {"transport": "ipc", "ip": prefix}}
