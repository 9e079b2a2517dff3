"""The built site, as a reader's browser sees it (run by `make site` after `make build`).

Headless Chromium (Debian's `chromium`, driven by Playwright) loads every page from a local web server
and checks: no local resource answers 404, math is typeset by MathJax, every widget cell shows a
rendered result (an image or a player), the Colab link opens this chapter's notebook, and the search
page finds a term. Screenshots and a count of the static interactive views go to _build/site-test/: of the
first screen of each page, or of whole pages with ``BOOK_SITE_SCREENSHOTS=full`` (for reviewing the
pages by eye; a whole long page costs seconds to render, most of this test's time in CI).
"""
import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "site-test"
CHROMIUM = os.environ.get("BOOK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
FULL_SCREENSHOTS = os.environ.get("BOOK_SITE_SCREENSHOTS", "") == "full"
PAGES = ["index"] + [c["file"] for part in TOC["parts"] for c in part["chapters"]]

pytestmark = [
    pytest.mark.skipif(not (HTML / "index.html").is_file(), reason="build the site first: make build"),
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium (CI installs it)"),
]


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    bad = []
    local = url.split("/", 3)[:3]
    page.on("response", lambda r: bad.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.url.startswith("/".join(local)) else None)
    page.on("requestfailed", lambda r: bad.append(f"failed {r.url}")
            if r.url.startswith("/".join(local)) else None)
    page.goto(url, wait_until="load")
    return page, bad


def hidden_widgets(page):
    """Widgets hidden when their cell finished (e.g. a finished tqdm bar): nothing to show, kernel or not."""
    state = page.locator("script[type='application/vnd.jupyter.widget-state+json']")
    if not state.count():
        return set()
    models = json.loads(state.first.text_content())["state"]

    def layout(m):
        ref = m["state"].get("layout")
        ref = ref.removeprefix("IPY_MODEL_") if isinstance(ref, str) else ""
        return models.get(ref, {}).get("state", {})
    return {mid for mid, m in models.items()
            if layout(m).get("visibility") == "hidden" or layout(m).get("display") == "none"}


# Per cell: does it display a widget that is not hidden, and how many images/players does it show?
CELLS_JS = """hidden => Array.from(document.querySelectorAll('div.cell')).map(cell => {
  const views = Array.from(cell.querySelectorAll(
      "script[type='application/vnd.jupyter.widget-view+json']")).map(s => JSON.parse(s.textContent).model_id);
  return {widget: views.some(v => !hidden.includes(v)),
          shown: cell.querySelectorAll('div.cell_output img, div.cell_output .animation').length};
})"""


@pytest.mark.parametrize("name", PAGES)
def test_page(name, server, browser):
    page, bad = open_page(browser, f"{server}/{name}.html")
    path = next(ROOT.glob(name + ".*"))
    source = path.read_text(encoding="utf-8")
    if re.search(r"\$[^$\n]+\$|\\\(|\$\$", source):
        page.wait_for_selector("mjx-container", state="attached", timeout=30_000)
        raw = page.locator("span.math:not(:has(mjx-container)), div.math:not(:has(mjx-container))").count()
        assert raw == 0, f"{raw} formulas on {name} were not typeset by MathJax"
    summary = {"page": name, "players": 0, "widget_cells": 0}
    if path.suffix == ".ipynb":  # a chapter notebook (the FAQ is a plain page: no cells, no Colab link)
        # one round trip for all cells (a locator per cell costs seconds on a long chapter)
        cells = page.evaluate(CELLS_JS, sorted(hidden_widgets(page)))
        for i, cell in enumerate(cells):
            if cell["widget"]:
                summary["widget_cells"] += 1
                assert cell["shown"], f"{name}: widget cell {i} shows no image or player without a kernel"
        summary["players"] = page.locator("div.cell_output .animation").count()
        colab = page.locator("a[href*='colab.research.google.com']")
        assert colab.count() >= 1, f"{name}: no Colab launch link"
        href = colab.first.get_attribute("href")
        assert href.endswith(f"/blob/main/{name}.ipynb"), href
        broken = page.evaluate("Array.from(document.querySelectorAll('div.cell_output img'))"
                               ".filter(i => !(i.complete && i.naturalWidth > 0)).length")
        assert broken == 0, f"{name}: {broken} broken images"
    page.screenshot(path=str(OUT / f"{name.replace('/', '__')}.png"), full_page=FULL_SCREENSHOTS)
    (OUT / f"{name.replace('/', '__')}.json").write_text(json.dumps(summary))
    assert not bad, f"{name}: local resources failed: {bad[:5]}"
    page.close()


def test_search_finds_a_term_from_a_chapter(server, browser):
    page, _ = open_page(browser, f"{server}/search.html?q=momentum")
    page.wait_for_selector("#search-results li", timeout=30_000)
    links = [a.get_attribute("href") for a in page.locator("#search-results li a").all()]
    assert any("gradient_descent" in (h or "") for h in links), links
    page.close()
