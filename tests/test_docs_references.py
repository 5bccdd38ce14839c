"""Every citation of the theory reference names a section of ``docs/theory.md``.

Docstrings, comments, sweep files, the notebook and the README cite the theory by section, as
``docs/theory.md §3.F`` (lists: ``docs/theory.md §1, §4``, ``§3.D and §3.E``, ``§1 to §4``).
These tests parse the section ids from the headings of ``docs/theory.md`` (``## 3. …`` gives
``3``, ``### 3.F …`` gives ``3.F``), scan every text file of the project (what git tracks plus
untracked files it does not ignore, or the project's folders where there is no git) and check
that

* every cited section exists;
* there are citations to check (so the test cannot pass on an empty scan);
* no citation of the old external specification remains (the reference lives in the
  repository now, so a clone holds everything a citation names).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "theory.md"
THIS = Path(__file__).resolve()

#: what is scanned: the project's folders and top-level files (not figures/, whose files are
#: generated output).
SCOPE = ("theory", "sims", "tests", "notebooks", "docs", ".ci", "README.md", "Makefile", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".txt", ".cfg", ".ini", ".json", ".yml", ".yaml", ".rst", ".sh", ""}
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints"}

#: a section id: a number, or a number and a capital letter (``3.F``), not followed by a letter or digit.
SECTION_ID = r"\d+(?:\.[A-Z])?(?![\w])"
#: a citation: ``docs/theory.md §3.F``, optionally with further ids (``, §4``, `` and §4``, `` to §4``).
CITATION = re.compile(
    r"docs/theory\.md\s+§\s?(?P<ids>" + SECTION_ID + r"(?:\s*(?:,|and|to|or|–)\s*§\s?" + SECTION_ID + r")*)"
)
#: anything that starts like a citation (to catch one whose id does not parse).
CITATION_START = re.compile(r"docs/theory\.md\s+§")
ONE_ID = re.compile(r"§\s?(" + SECTION_ID + r")")
#: headings that define sections: ``## 3. Title`` and ``### 3.F Title``.
HEADING = re.compile(r"^(?P<level>#{2,3})\s+(?P<id>\d+\.(?:[A-Z](?=\s))?)")
#: the old citations of the external specification: ``SPEC 3.F``, ``SPEC section 5``,
#: ``SPEC sections 1 and 4``, ``SPEC E``, ``SPEC's``, ``SPEC §``, ``SPEC.md``.
OLD_CITATION = re.compile(r"\bSPEC(?:\s+(?:sections?\s+)?(?:\d|[A-G]\b)|\s*§|'s\b|\.md\b)")
#: at least this many citations must be found, in at least this many files.
MIN_CITATIONS = 50
MIN_CITING_FILES = 10


def section_ids(text: str) -> list[str]:
    """Section ids of a Markdown page, in order: ``## 3. X`` gives ``3``, ``### 3.F X`` gives ``3.F``.

    Lines inside fenced code blocks are not headings.

    >>> section_ids("# T\\n## 1. A\\n### 1.A B\\n```\\n## 9. no\\n```\\n## 2. C\\n")
    ['1', '1.A', '2']
    """
    ids, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            ident = match["id"].rstrip(".")
            if (match["level"] == "##") != ("." not in ident):
                raise AssertionError(f"docs/theory.md: heading level does not fit its number: {line!r}")
            ids.append(ident)
    return ids


def project_files() -> list[Path]:
    """The project's text files: tracked plus untracked-but-not-ignored (git), or a walk without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SCOPE],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout
        names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
        paths = [ROOT / n for n in names]
    except (OSError, subprocess.SubprocessError):
        paths = []
        for entry in SCOPE:
            top = ROOT / entry
            if top.is_file():
                paths.append(top)
            for folder, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
                paths += [Path(folder) / f for f in files]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")]


def pieces(path: Path) -> list[tuple[str, str]]:
    """``(label, text)`` pieces of one file: the whole file, or one per cell of a notebook."""
    data = path.read_bytes()
    if b"\0" in data:
        return []
    text = data.decode("utf-8", "replace")
    rel = path.relative_to(ROOT).as_posix()
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text)["cells"]
            return [(f"{rel}[cell {i}]", "".join(c.get("source", ""))) for i, c in enumerate(cells)]
        except (ValueError, KeyError, TypeError):
            pass
    return [(rel, text)]


def where(label: str, text: str, index: int) -> str:
    return f"{label}:{text.count(chr(10), 0, index) + 1}"


@pytest.fixture(scope="module")
def corpus() -> list[tuple[Path, str, str]]:
    return [(path, label, text) for path in project_files() for label, text in pieces(path)]


@pytest.fixture(scope="module")
def sections() -> list[str]:
    assert DOC.is_file(), "docs/theory.md is missing"
    return section_ids(DOC.read_text(encoding="utf-8"))


def test_theory_sections_are_well_formed(sections):
    assert sections, "docs/theory.md has no numbered sections"
    assert len(sections) == len(set(sections)), f"docs/theory.md: a section id repeats: {sections}"
    seen: set[str] = set()
    for ident in sections:
        if "." in ident:
            assert ident.split(".")[0] in seen, f"docs/theory.md: §{ident} comes before its section"
        seen.add(ident)
    numbers = [int(i) for i in sections if "." not in i]
    assert numbers == list(range(1, len(numbers) + 1)), f"docs/theory.md: sections not numbered 1, 2, …: {numbers}"


def test_every_citation_names_a_section(corpus, sections):
    known = set(sections)
    cited, bad, files = 0, [], set()
    for path, label, text in corpus:
        for start in CITATION_START.finditer(text):
            match = CITATION.match(text, start.start())
            if match is None:
                bad.append(f"{where(label, text, start.start())}: unreadable citation "
                           f"{text[start.start():start.end() + 12]!r}")
                continue
            for ident in ONE_ID.findall(match.group(0)):
                cited += 1
                files.add(path)
                if ident not in known:
                    bad.append(f"{where(label, text, match.start())}: §{ident} is not a section of docs/theory.md")
    assert not bad, "citations that docs/theory.md cannot answer:\n" + "\n".join(bad)
    assert cited >= MIN_CITATIONS, f"only {cited} citations of docs/theory.md found (expected >= {MIN_CITATIONS})"
    assert len(files) >= MIN_CITING_FILES, f"citations in only {len(files)} files (expected >= {MIN_CITING_FILES})"


def test_no_citation_of_the_external_specification_remains(corpus):
    old = [f"{where(label, text, m.start())}: {text[m.start():m.end() + 8]!r}"
           for path, label, text in corpus if path.resolve() != THIS
           for m in OLD_CITATION.finditer(text)]
    assert not old, "cite the section of docs/theory.md (as docs/theory.md §3.F) instead of the external SPEC:\n" + "\n".join(old)


def test_the_scan_sees_the_project(corpus):
    labels = {label.split("[")[0] for _, label, _ in corpus}
    for expected in ("README.md", "docs/theory.md", "theory/floors.py", "sims/metrics.py",
                     "tests/test_docs_references.py"):
        assert expected in labels, f"{expected} was not scanned"
