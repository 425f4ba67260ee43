"""Every third-party BPMN/DMN file of ../shared/bpmn-corpus validates or is refused with located messages.

Validation must never let an exception escape, whatever the file: each file is validated together with
the sibling files (same folder) that define the processes its call activities call, so a call activity
can resolve while an unrelated broken sibling does not spoil the file under test.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import Problem
from engine.sandbox import Sandbox
from engine.specs import Validation, validate

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "bpmn-corpus"
SUFFIXES = (".bpmn", ".bpmn20.xml", ".dmn")
_PROCESS_ID = re.compile(rb"<(?:[\w.-]+:)?process\b[^>]*?\sid=\"([^\"]+)\"")
_CALLED = re.compile(rb"calledElement=\"([^\"]+)\"")


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def sources_for(path: Path) -> dict[str, bytes]:
    """The file, plus the first sibling defining each process it calls (transitively)."""
    siblings = [
        p for p in sorted(path.parent.iterdir()) if p.is_file() and p.name.endswith(SUFFIXES) and p != path
    ]
    provides = {p: set(_PROCESS_ID.findall(p.read_bytes())) for p in siblings}
    raw = path.read_bytes()
    chosen = {path.name: raw}
    known = set(_PROCESS_ID.findall(raw))
    wanted = set(_CALLED.findall(raw)) - known
    while wanted:
        process_id = wanted.pop()
        known.add(process_id)
        provider = next((p for p, ids in provides.items() if process_id in ids), None)
        if provider is None or provider.name in chosen:
            continue
        text = provider.read_bytes()
        chosen[provider.name] = text
        known |= provides[provider]
        wanted |= set(_CALLED.findall(text)) - known
    return chosen


def run(path: Path) -> Validation:
    return validate(sources_for(path), forms_dir=None, sandbox=Sandbox())


def located(problem: Problem) -> bool:
    return (
        bool(problem.message.strip())
        and bool(problem.file)
        and (bool(problem.element_id) or problem.line is not None)
    )


FILES = corpus_files()


@pytest.mark.skipif(not FILES, reason=f"the BPMN corpus is not present at {CORPUS}")
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) if FILES else "" for p in FILES])
def test_corpus_file_validates_or_is_refused_with_located_messages(path: Path) -> None:
    result = run(path)
    errors = [p for p in result.problems if p.severity == "error"]
    unlocated = [str(p) for p in errors if not located(p)]
    assert not unlocated, unlocated
    assert result.ok == (not errors)
    if result.ok:
        assert result.processes, "a file that validates yields at least one process"


def test_corpus_summary_prints_how_many_validate_and_the_most_common_refusals() -> None:
    if not FILES:
        pytest.skip(f"the BPMN corpus is not present at {CORPUS}")
    accepted: list[Path] = []
    refused: list[Path] = []
    reasons: Counter[str] = Counter()
    for path in FILES:
        result = run(path)
        (accepted if result.ok else refused).append(path)
        for problem in result.problems:
            if problem.severity == "error":
                reasons[re.sub(r"'[^']*'", "'…'", problem.message)[:100]] += 1
    print(f"\nBPMN corpus: {len(FILES)} files, {len(accepted)} validate, {len(refused)} refused")
    for path in accepted:
        print(f"  validates: {path.relative_to(CORPUS)}")
    for message, count in reasons.most_common(15):
        print(f"  {count:4d}  {message}")
    assert len(accepted) + len(refused) == len(FILES)
