"""Execute the chapters in parallel into the build's jupyter-cache, so `jupyter-book build` only renders.

Why: myst-nb's `cache` mode executes the notebooks one after another. With `-j 2` on a 2-core machine,
two kernels with one torch thread each finish the whole book in a little over half the time.

Nothing is hidden by this: a notebook that fails here is simply not cached, so the build executes it
itself and reports the failure (with `-W` the build fails). A notebook already in the cache (same code
cells, same kernel) is skipped, exactly as the build would skip it.

    python tools/prefill_cache.py -j 2            # then: jupyter-book build . -W -n
    python tools/prefill_cache.py -j 2 --executed _build/colab/executed   # reuse `make colab`'s runs

``--executed DIR`` (what `make test` passes): a chapter that `make colab` already ran -- the same code cells,
without an error, against the same ``book/`` sources (a fingerprint written into the notebook) -- is cached
from that run instead of being executed again, so CI executes each chapter once for the site and the Colab
check together. Its install cell's output (pip's) is dropped: on the site that cell shows nothing.

Kernels are started with ``kernels.kernel_config()`` (Unix sockets, not TCP ports: see there).
"""
import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution
from kernels import kernel_config
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent


def toc_notebooks():
    """The notebooks the book builds, in table-of-contents order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


def book_fingerprint(root: Path = ROOT) -> str:
    """SHA-256 over the ``book`` package's sources: an executed chapter is reusable only with the same code."""
    h = hashlib.sha256()
    for p in sorted((root / "book").rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def reusable(path: Path, executed_dir: Path, fingerprint: str):
    """``(notebook, why)``: the chapter as executed elsewhere, ready for the cache, or None and the reason."""
    done = executed_dir / path.name
    if not done.is_file():
        return None, "not executed there"
    nb = nbformat.read(done, as_version=4)
    if nb.metadata.get("book_fingerprint") != fingerprint:
        return None, "book/ changed since it ran"
    nb.cells = [c for c in nb.cells if "colab-probe" not in c.get("metadata", {}).get("tags", [])]
    source = nbformat.read(path, as_version=4)
    code = [c.source for c in source.cells if c.cell_type == "code"]
    if [c.source for c in nb.cells if c.cell_type == "code"] != code:
        return None, "the chapter changed since it ran"
    if any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs):
        return None, "it failed there"
    mine = [c for c in source.cells if c.cell_type == "code"]
    for c, own in zip([c for c in nb.cells if c.cell_type == "code"], mine):
        c.metadata = own.metadata       # nbclient adds timings; the cache matches on the chapter's own metadata
        if "colab-install" in own.metadata.get("tags", []):
            c.outputs, c.execution_count = [], None
    nb.metadata = source.metadata
    return nb, "reused"


def execute(path, timeout):
    """Run one notebook in its own folder (as the build does); returns it executed, or the error."""
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(path.parent), timeout=timeout, allow_errors=False,
                                 meta_override=True, config=Config(kernel_config()))
    return path, result.nb if result.err is None else None, result.time, result.exc_string


def main(argv=None):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=2, help="notebooks executed at once (default 2)")
    ap.add_argument("--cache", default=str(ROOT / "_build" / ".jupyter_cache"),
                    help="jupyter-cache folder of the build (jupyter-book's default: _build/.jupyter_cache)")
    ap.add_argument("--executed", type=Path, help="a folder of chapters executed by `make colab` to reuse")
    args = ap.parse_args(argv)
    timeout = config["execute"].get("timeout", 600)
    if args.jobs > 1:
        # each kernel inherits this: parallel kernels with several threads each thrash the cores
        for var in ("BOOK_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")

    cache = get_cache(args.cache)
    todo = []
    for path in toc_notebooks():
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
            print(f"cached already: {path.relative_to(ROOT)}")
        except KeyError:
            todo.append(path)

    if args.executed and todo:
        fingerprint, still = book_fingerprint(), []
        for path in todo:
            nb, why = reusable(path, args.executed, fingerprint)
            if nb is None:
                print(f"executing {path.relative_to(ROOT)}: the run in {args.executed} is not reusable ({why})")
                still.append(path)
                continue
            record = cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(CacheBundleIn(nb, record.uri, data={"reused_from": str(args.executed)}),
                                        check_validity=False, overwrite=True)
            print(f"reused {path.relative_to(ROOT)} as executed in {args.executed}")
        todo = still

    start, failed = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(execute, p, timeout) for p in todo]
        for future in as_completed(futures):
            path, nb, seconds, error = future.result()
            name = path.relative_to(ROOT)
            if nb is None:
                failed.append(name)
                print(f"FAILED {name} ({seconds:.1f} s): left to the build, which will report it\n{error}")
                continue
            # the cache database is written from this process only (SQLite, one writer)
            record = cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(CacheBundleIn(nb, record.uri, data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"executed {name} in {seconds:.1f} s")
    print(f"{len(todo) - len(failed)} of {len(todo)} notebooks executed into {args.cache} "
          f"in {time.perf_counter() - start:.0f} s with {args.jobs} jobs")
    return 0  # failures are the build's to report


if __name__ == "__main__":
    sys.exit(main())
