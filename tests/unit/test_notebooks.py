"""Repository-level checks of the chapters, the table of contents and the packaging."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from sync_install_cell import install_cell_source  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def read(path):
    return nbformat.read(path, as_version=4)


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    for cell in read(path).cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name} is stored with outputs: run `jupyter nbconvert --clear-output --inplace {path}`"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_colab_install_cell(path):
    first = next(c for c in read(path).cells if c.cell_type == "code")
    assert first.source == install_cell_source(), "run `python tools/sync_install_cell.py`"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_skeleton(path):
    """Goals at the top, a summary, >= 4 exercises, each solution hidden and followed by its check."""
    cells = read(path).cells
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "Learning goals" in "\n".join(c.source for c in cells[:4]), "learning goals must come first"
    assert "## Summary" in text and "## Exercises" in text
    assert len(re.findall(r"^`{3,}\{exercise\}", text, re.M)) >= 4
    tags = [c.metadata.get("tags", []) for c in cells]
    solutions = [i for i, t in enumerate(tags) if "solution" in t]
    checks = [i for i, t in enumerate(tags) if "check" in t]
    assert len(solutions) >= 4 and len(checks) >= 4
    for i in solutions:
        assert cells[i - 1].source.startswith("```{solution-start}"), f"cell {i}: solution not gated"
        assert cells[i + 1].source.startswith("```{solution-end}"), f"cell {i}: solution not closed"
    for i in checks:
        assert "check." in cells[i].source and any(s < i for s in solutions)


def test_every_chapter_is_in_the_toc_and_every_toc_file_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for f in files:
        assert list(ROOT.glob(f + ".*")), f"_toc.yml lists {f}, which does not exist"
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in files, f"{path.name} is missing from _toc.yml"


def test_glossary_covers_chinese_terms_used_in_chapters():
    """A Chinese term given in a chapter as '(中文)' or '· 中文' must be in the glossary."""
    glossary = (ROOT / "appendix" / "glossary.md").read_text(encoding="utf-8")
    missing = set()
    for path in CHAPTERS:
        text = "\n".join(c.source for c in read(path).cells if c.cell_type == "markdown")
        for term in re.findall(r"\(([\u4e00-\u9fff]{2,})(?:[,:][^)]*)?\)", text):
            if term not in glossary:
                missing.add(f"{term} ({path.stem})")
    assert not missing, f"add these terms to appendix/glossary.md: {sorted(missing)}"


def test_wheel_carries_the_shipped_data(tmp_path):
    """Colab installs the package with pip from git: the wheel must include assets/ as book_assets."""
    shutil.rmtree(ROOT / "build", ignore_errors=True)   # setuptools' leftovers would slip deleted modules in
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("book_assets/data/tinyshakespeare.txt.xz", "book_assets/data/t10k-images-idx3-ubyte.gz",
              "book_assets/references.bib"):
        assert f in names, f"{f} missing from the wheel"
    # every module of the package, and nothing else (a stale build/ folder once slipped old modules in)
    ours = {p.relative_to(ROOT).as_posix() for p in (ROOT / "book").rglob("*.py")}
    assert ours - names == set(), f"missing from the wheel: {sorted(ours - names)}"
    stale = {n for n in names if n.startswith("book/") and n.endswith(".py")} - ours
    assert not stale, f"the wheel has modules the package no longer has (delete build/): {sorted(stale)}"


def test_site_text_builds_without_warnings(tmp_path):
    """The `-W -n` build without executing anything: every {doc}, {cite}, {ref}, role and directive
    resolves. Seconds here, instead of a failure at the end of the full build (which runs every chapter)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # without execution there is no glued value to insert: only that warning is expected here
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["suppress_warnings"] = [*sphinx_config.get("suppress_warnings", []), "mystnb.glue"]
    # a local extension is found relative to the config file, so the variant sits beside the original
    variant = ROOT / f"_config.noexec-{os.getpid()}-{tmp_path.name}.yml"
    variant.write_text(yaml.safe_dump(config, allow_unicode=True))
    try:
        run = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n",
                              "--keep-going", "--config", str(variant), "--path-output", str(tmp_path)],
                             capture_output=True, text=True, timeout=300)
    finally:
        variant.unlink()
    problems = [l for l in (run.stdout + run.stderr).splitlines() if "WARNING" in l or "ERROR" in l]
    assert run.returncode == 0 and not problems, "\n".join(problems) or run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_figure_is_drawn_into_an_output_widget(path):
    """A plot inside `widgets.Output` lives only in widget state: the static site shows nothing there."""
    for cell in read(path).cells:
        if cell.cell_type == "code":
            assert not re.search(r"\b(widgets|w)\.Output\(", cell.source), \
                f"{path.name}: use book.ui.explore(fig, draw, **controls) instead of an Output widget"


def test_prefill_cache_runs_exactly_the_books_notebooks():
    from prefill_cache import toc_notebooks  # tools/, run by `make build`

    assert [p.name for p in toc_notebooks()] and sorted(toc_notebooks()) == CHAPTERS


def test_our_kernels_listen_on_unix_sockets_where_a_tcp_port_could_be_taken(tmp_path, monkeypatch):
    """Over TCP a kernel binds ports that jupyter_client chose and released earlier; if anything takes one in
    between, the kernel dies before it starts (CI failed on that once, with two executions at once). Every
    NotebookClient of ours takes `kernel_config()`: the kernel then listens on Unix sockets (ipc)."""
    import socket
    import tempfile

    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient
    from kernels import kernel_config
    from traitlets.config import Config

    # the failure, made certain: the kernel is told to bind a TCP port that something else holds (as when a
    # port is taken between jupyter_client choosing it and the kernel binding it)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        km = KernelManager(kernel_name="python3", connection_file=str(tmp_path / "tcp.json"), cache_ports=False,
                           transport="tcp", ip="127.0.0.1", shell_port=taken.getsockname()[1])
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            with pytest.raises(RuntimeError, match="died"):
                kc.wait_for_ready(timeout=60)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    config = kernel_config()
    assert config["KernelManager"]["transport"] == "ipc", f"TCP chosen: is {tempfile.gettempdir()} too deep?"
    assert config != kernel_config(), "one fresh prefix per call"
    # the kernel in another folder than its client (as every chapter runs): the sockets' path must be absolute
    (tmp_path / "elsewhere").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import json, ipykernel; print(json.loads(ipykernel.get_connection_info())['transport'])")])
    NotebookClient(nb, timeout=60, kernel_name="python3", shutdown_kernel="immediate", config=Config(config),
                   resources={"metadata": {"path": str(tmp_path / "elsewhere")}}).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == "ipc"
    assert not list(Path(config["KernelManager"]["ip"]).parent.glob(Path(config["KernelManager"]["ip"]).name + "*")), \
        "the kernel's socket files are removed with it"
    # a socket address holds 103 bytes (macOS) or 107 (Linux): a deeper temporary folder keeps TCP rather than fail
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("d" * 80)))
    assert kernel_config()["KernelManager"]["transport"] == "tcp"


# Imports a chapter may make without the package declaring them: each is guarded in the chapter.
OPTIONAL_IMPORTS = {
    "jax": "tools: the JAX comparison runs only where JAX is installed (Colab has it)",
    "peft": "lora: compared with Hugging Face's peft where installed (Colab has it), else says how to get it",
    "transformers": "applications: the online Hugging Face example needs it and a network; else says so",
}


def _imported_modules(source: str) -> set[str]:
    import ast
    tree = ast.parse("\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_everything_chapters_and_book_import_is_a_declared_dependency():
    """A chapter opened outside Colab and `make` (Kaggle, a plain Jupyter) must not fail on an import:
    every third-party module imported by a chapter or by `book` (the teacher's tools aside) is
    provided by a dependency in pyproject.toml."""
    import importlib.metadata as md

    import tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in deps}
    sources = {p.name: "\n".join(c.source for c in read(p).cells if c.cell_type == "code") for p in CHAPTERS}
    sources.update({str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "book").rglob("*.py")
                    if "teach" not in p.parts and p.stem != "teach"})
    providers = md.packages_distributions()
    missing = {}
    for where, src in sources.items():
        for mod in _imported_modules(src) - set(sys.stdlib_module_names) - {"book", "book_assets", "__future__"}:
            dists = {d.lower() for d in providers.get(mod, [mod])}
            if not dists & declared and mod not in OPTIONAL_IMPORTS:
                missing.setdefault(mod, []).append(where)
    assert not missing, f"imported but not a dependency in pyproject.toml: {missing}"


def test_install_cell_pins_the_release_and_holds_installed_versions():
    import sync_install_cell as sic
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    src = install_cell_source()
    assert f"@v{version}\"" in src and '"@main"' in src  # pinned, and says how to get the latest
    assert "%pip install -q -c {f.name} {spec}" in src      # installs under the held versions
    assert "@1a2b3c\"" in sic.install_cell_source("1a2b3c")
    with pytest.raises(ValueError, match="not a git tag"):
        sic.install_cell_source("main; rm -rf /")


PAGE_WIDTH = 88  # characters the built page's code column shows without scrolling


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_lines_fit_the_page(path):
    """Every code line fits the page's code column; the Colab install cell (generated) is exempt."""
    code = [c for c in read(path).cells if c.cell_type == "code"]
    long = [f"{path.name} code cell {i}, line {n}: {len(line)} > {PAGE_WIDTH} characters: {line.strip()[:60]}"
            for i, cell in enumerate(code) if i > 0
            for n, line in enumerate(cell.source.splitlines(), 1) if len(line) > PAGE_WIDTH]
    assert not long, "wrap these lines:\n" + "\n".join(long)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_shows_its_from_scratch_code_collapsed(path):
    """A chapter shows the book code it relies on with `show_source(...)` in a cell tagged `hide-output`,
    which the site renders as a collapsed toggle."""
    shown = [c for c in read(path).cells if c.cell_type == "code" and "show_source(" in c.source
             and "hide-output" in c.metadata.get("tags", [])]
    assert shown, f"{path.name}: add a `show_source(obj)` cell tagged hide-output for the code it teaches"


def test_prefill_reuses_a_colab_run_only_when_it_is_this_chapter_and_this_book(tmp_path):
    """`make build` caches a chapter from `make colab`'s run instead of executing it again, but only if that
    run had the same code cells, no error and the same book/ sources; the install cell's pip output is dropped."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from prefill_cache import book_fingerprint, reusable

    chapter = ROOT / "chapters" / "history.ipynb"
    fingerprint = book_fingerprint()

    def executed(**change):
        nb = nbformat.read(chapter, as_version=4)
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs = [nbformat.v4.new_output("stream", text="pip says hi\n" if c is nb.cells[1] else "ok\n")]
                c.metadata["execution"] = {"iopub.status.busy": "2026-11-30T00:00:00Z"}   # nbclient's timings
        nb.cells.append(nbformat.v4.new_code_cell("print('probe')", metadata={"tags": ["colab-probe"]}))
        nb.metadata["book_fingerprint"] = change.pop("fingerprint", fingerprint)
        for key, value in change.items():
            setattr(nb.cells[-2], key, value)
        (tmp_path / "run").mkdir(exist_ok=True)
        nbformat.write(nb, tmp_path / "run" / chapter.name)

    assert reusable(chapter, tmp_path / "run", fingerprint) == (None, "not executed there")
    executed()
    nb, why = reusable(chapter, tmp_path / "run", fingerprint)
    assert why == "reused" and not any("colab-probe" in c.metadata.get("tags", []) for c in nb.cells)
    install = next(c for c in nb.cells if "colab-install" in c.metadata.get("tags", []))
    assert install.outputs == [] and all(c.outputs for c in nb.cells if c.cell_type == "code" and c is not install)
    cache = get_cache(tmp_path / "cache")
    record = cache.add_nb_to_project(str(chapter))
    cache.cache_notebook_bundle(CacheBundleIn(nb, record.uri), check_validity=False, overwrite=True)
    cache.match_cache_notebook(nbformat.read(chapter, as_version=4))   # the build finds it
    executed(fingerprint="0" * 64)
    assert reusable(chapter, tmp_path / "run", fingerprint)[1] == "book/ changed since it ran"
    executed(source="print('edited')")
    assert reusable(chapter, tmp_path / "run", fingerprint)[1] == "the chapter changed since it ran"
    executed(outputs=[nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])])
    assert reusable(chapter, tmp_path / "run", fingerprint)[1] == "it failed there"
