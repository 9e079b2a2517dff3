"""Numbers in a chapter's prose come from its execution (``book.glue``), not from the keyboard.

A Markdown cell may not contain a measured-looking number -- a decimal (0.913), a percentage (12 %), a
number with a unit of time, speed or size (3.2 s, 150 GFLOP/s, 4 GB) or with thousands separators
(61,706) -- unless it is glued (``{glue:text}`name:.3f```), inside code or math, or listed in
``typed_numbers.yml`` with the reason it may be typed (a cited fact with its citation key, a definition,
a setting the code also uses). Chapters still waiting for their audit (issue #17) are listed there under
``not_audited``: their typed numbers are reported, not failed, and the list may only shrink.
"""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = Path(__file__).parent / "typed_numbers"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
AUDITED = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) or [] for p in ALLOWED.glob("*.yml")}
MAX_NOT_AUDITED = 0    # lower it whenever a chapter is audited; never raise it

# what is not prose: code, math, roles with their argument, links, MyST directive options
STRIP = [re.compile(p, re.S) for p in (
    # code blocks go; a MyST directive's fence lines and options go, its prose (boxes, exercises) stays
    r"(`{3,})(?!\{)[^\n]*\n.*?\1", r"(?m)^`{3,}[^\n]*$", r"`[^`\n]*`", r"\$\$.*?\$\$", r"\$[^$\n]+\$",
    r"\{[\w:-]+\}`[^`]*`",
    r"\]\([^)]*\)", r"https?://\S+", r"(?m)^:[\w-]+:[^\n]*$", r"<[^>\n]+>")]
NUMBER = re.compile(
    r"(?<![\w.,§–-])(?:"        # not a section number (§4.1, §4.1–4.3)
    r"\d+(?:\.\d+)?(?:\s?(?:ms|µs|seconds|minutes|GB|MB|kB|GiB|MiB|GFLOP/s|TFLOP/s|tokens/s|it/s)|\ss)\b"
    r"|\d+\.\d+(?:\s?(?:%|×|x\b))?"                                 # 0.913, 1.5 %, 3.2x
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?"                                # 61,706
    r"|\d+\s?%"                                                     # 12 %
    r")")


def typed_numbers(chapter: str) -> list[str]:
    """The measured-looking numbers typed into a chapter's Markdown cells, in order."""
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for pattern in STRIP:
            text = pattern.sub(" ", text)
        found += [m.group(0) for m in NUMBER.finditer(text)]
    return found


def test_audits_only_move_forward():
    stray = sorted(set(AUDITED) - set(CHAPTERS))
    assert not stray, f"typed_numbers/ has files for no chapter: {stray}"
    waiting = sorted(set(CHAPTERS) - set(AUDITED))
    assert len(waiting) <= MAX_NOT_AUDITED, f"a chapter was added without its audit: {waiting}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_measured_numbers_in_prose_are_glued(chapter):
    found = typed_numbers(chapter)
    if chapter not in AUDITED:
        pytest.skip(f"not audited yet (#17): {len(found)} typed numbers, e.g. {found[:5]}")
    for entry in AUDITED[chapter]:
        assert entry.get("why"), f"{chapter}: say why {entry['text']!r} may be typed (a citation key or a reason)"
    allowed = {str(e["text"]) for e in AUDITED[chapter]}
    typed = [n for n in found if n not in allowed]
    assert not typed, (f"{chapter}: glue these (book.glue + {{glue:text}}) or allow them in "
                       f"tests/unit/typed_numbers/{chapter}.yml with the reason: {typed}")
    unused = allowed - set(found)
    assert not unused, f"{chapter}: typed_numbers/{chapter}.yml allows numbers it no longer has: {sorted(unused)}"


def test_the_detector_finds_measured_numbers_and_spares_the_rest():
    text = ("Accuracy 0.913 after 3.2 s (12 % better, 61,706 parameters); `lr=0.1` and $x^{0.5}$ and "
            "{glue:text}`acc:.3f` and {cite}`he2016deep`; 3 layers, 10 epochs, [the paper](https://x.org/1.5)\n"
            "```python\nx = 0.25\n```\n"
            "```{admonition} The source says / actually\n:class: warning\nIt (§4.1–4.2, 1980s) claims 0.613.\n```\n")
    for pattern in STRIP:
        text = pattern.sub(" ", text)
    assert [m.group(0) for m in NUMBER.finditer(text)] == ["0.913", "3.2 s", "12 %", "61,706", "0.613"]
