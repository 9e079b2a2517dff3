"""Runs ONE assembled notebook inside the grading sandbox (a standalone script: stdlib + IPython).

Usage: ``python runner.py <channel fd>``, in a work folder holding ``job.pkl`` (the cells to run).

Nothing this script computes is trusted. It only *reports values*: after running the cells it asks the
grader (on stdin) for probes -- grader-chosen calls and expressions -- and writes each probe's value as
JSON to the channel fd. Pass or fail is decided by the grader, outside this process, against values the
submission never sees. Student code shares this process and may tamper with anything here; the worst it
can do is report wrong values (which scores nothing) or values it already knows to be right.
"""
import json
import os
import pickle
import signal
import sys

MAX_STR = 10_000          # characters of one string value sent back
MAX_ITEMS = 1_000_000     # numbers in one value


def send(fd, obj):
    data = (json.dumps(obj) + "\n").encode()
    while data:  # a pipe may take only part of a large write
        n = os.write(fd, data)
        data = data[n:]


def encode(x, depth=0, budget=None):
    """A JSON-safe description of a value (never pickle: the grader must not unpickle student data)."""
    budget = budget if budget is not None else [MAX_ITEMS]
    if depth > 30:
        raise ValueError("value nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x[:MAX_STR] if isinstance(x, str) else x
    if isinstance(x, int):
        return x if abs(x) < 2 ** 53 else {"bigint": str(x)}
    if isinstance(x, float):
        return {"float": repr(x)} if x != x or x in (float("inf"), float("-inf")) else x
    if isinstance(x, (list, tuple)):
        items = [encode(i, depth + 1, budget) for i in x]
        return {"tuple": items} if isinstance(x, tuple) else items
    if isinstance(x, dict):
        return {"dict": [[encode(k, depth + 1, budget), encode(v, depth + 1, budget)] for k, v in x.items()]}
    mod = type(x).__module__.split(".")[0]
    if mod in ("torch", "numpy") and hasattr(x, "tolist"):
        if mod == "torch":
            x = x.detach().cpu()
        size = int(getattr(x, "numel", lambda: getattr(x, "size", 1))())
        budget[0] -= size
        if budget[0] < 0:
            raise ValueError("value too large to report")
        kind = "tensor" if mod == "torch" else "ndarray"
        return {kind: _finite(x.tolist()), "dtype": str(x.dtype)}
    return {"object": type(x).__name__}


def _finite(v):
    if isinstance(v, list):
        return [_finite(i) for i in v]
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return {"float": repr(v)}
    return v


class ProbeTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise ProbeTimeout("took too long")


def run_cells(shell, cells, chan):
    """Run the notebook's cells in order; remember the namespace at each exercise's check position."""
    snapshots = {}
    for i, cell in enumerate(cells):
        if cell["kind"] == "snapshot":
            snapshots[cell["label"]] = dict(shell.user_ns)
            continue
        print(f"\n----- cell {cell['index']} -----", flush=True)
        result = shell.run_cell(cell["source"], store_history=False, silent=False)
        err = result.error_before_exec or result.error_in_exec
        send(chan, {"cell": cell["index"], "error": None if err is None else f"{type(err).__name__}: {err}"[:500]})
    return snapshots


def run_probe(probe, namespace, seconds):
    """Evaluate one probe; return the list of reported values (or errors), one per call / expression."""
    values = []
    ns = dict(namespace)
    signal.signal(signal.SIGALRM, _alarm)
    try:
        if "call" in probe:
            fn = eval(probe["call"], ns)
            for args, kwargs in probe["args"]:
                values.append(_one(lambda: fn(*args, **kwargs), seconds))
        else:
            for kind, src in probe["steps"]:
                if kind == "probe":
                    values.append(_one(lambda: eval(compile(src, "<hidden>", "eval"), ns), seconds))
                else:
                    got = _one(lambda: exec(compile(src, "<hidden>", "exec"), ns), seconds)
                    if "error" in got:  # setup code failed: the rest of this test cannot run
                        values.append(got)
                        break
    except BaseException as e:  # a name the probe needs is missing, or worse
        values.append({"error": f"{type(e).__name__}: {e}"[:300]})
    return values


def _one(thunk, seconds):
    signal.alarm(seconds)
    try:
        return {"value": encode(thunk())}
    except BaseException as e:
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    finally:
        signal.alarm(0)


def main():
    chan = int(sys.argv[1])
    with open("job.pkl", "rb") as f:
        job = pickle.load(f)
    os.remove("job.pkl")
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    snapshots = run_cells(shell, job["cells"], chan)
    # From here on nothing printed reaches the feedback: probes may show hidden inputs. The grader cuts the
    # feedback at this mark (the channel below may overtake the output pipe) and only then sends the probes.
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, job["output_end"])
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    send(chan, {"phase": "probes"})
    probes = pickle.load(sys.stdin.buffer)  # sent only now, after the submission's own cells have run
    for probe in probes:
        ns = snapshots.get(probe["snapshot"], shell.user_ns)
        send(chan, {"probe": probe["id"], "values": run_probe(probe, ns, job["probe_seconds"])})
    send(chan, {"phase": "done"})
    os._exit(0)  # skip interpreter teardown: student atexit hooks must not run after the results


if __name__ == "__main__":
    main()
