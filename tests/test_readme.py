"""The README's examples, run as a reader would run them.

A fenced block whose info string carries the word `test` (```` ```console test ````,
```` ```python test ````) is run in a copy of the tutorial's folder, one copy per
README section, blocks in the order they appear: a `console` block's `$` lines
in one bash session, each command's stdout then stderr compared with the lines
below it; a `python` block as a doctest. What differs from one run to the next
(run ids, ULIDs, times, durations, the folder's path) is normalised on both
sides before comparing.
"""

from __future__ import annotations

import doctest
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import user_environment

README = Path(__file__).parent.parent / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
FOLDER_IN_README = "/path/to/examples"
VARYING = [
    (re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b"), "<ULID>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<RUN ID>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<RUN>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<TIME>"),
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<SECONDS> s"),
    (re.compile(r"\bETA \d+:\d\d\b"), "ETA <ETA>"),
]


@dataclass(frozen=True)
class Block:
    section: str
    kind: str  # "console" or "python"
    body: str
    line: int  # where the body starts in README.md


def marked_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if "test" not in words[1:]:
            continue
        before = text[: match.start()]
        headings = re.findall(r"^## (.+)$", before, re.MULTILINE)
        line = before.count("\n") + 2
        blocks.append(Block(headings[-1] if headings else "", words[0], match["body"], line))
    return blocks


BLOCKS = marked_blocks(README.read_text())
SECTIONS = list(dict.fromkeys(block.section for block in BLOCKS))


def normalised(text: str, folder: Path | None = None) -> str:
    if folder is not None:
        text = text.replace(str(folder), FOLDER_IN_README)
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def commands(body: str) -> list[tuple[str, str]]:
    """The `$ command` lines of a console block, each with the output below it."""
    pairs: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            assert pairs, f"output before the first command: {line!r}"
            pairs[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in pairs]


def run_console(block: Block, folder: Path) -> list[str]:
    """Runs the block's commands in one bash session; returns the mismatches."""
    pairs = commands(block.body)
    outputs = folder.parent / "outputs"
    outputs.mkdir(exist_ok=True)
    script = [f"cd {folder}"] + [
        f'{{ {command}\n}} >"{outputs}/{i}.out" 2>"{outputs}/{i}.err"'
        for i, (command, _) in enumerate(pairs)
    ]
    subprocess.run(
        ["bash", "-c", "\n".join(script)], env=user_environment(), timeout=600, check=True
    )
    mismatches = []
    for i, (command, expected) in enumerate(pairs):
        got = (outputs / f"{i}.out").read_text() + (outputs / f"{i}.err").read_text()
        if normalised(got, folder) != normalised(expected):
            mismatches.append(
                f"README.md:{block.line}: $ {command}\n"
                f"--- expected\n{normalised(expected)}\n--- got\n{normalised(got, folder)}"
            )
    return mismatches


class NormalisingChecker(doctest.OutputChecker):
    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(normalised(want) + "\n", normalised(got) + "\n", optionflags)


def run_python(block: Block, namespace: dict[str, object]) -> list[str]:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.body, namespace, block.section, str(README), block.line - 1)
    report: list[str] = []
    runner = doctest.DocTestRunner(checker=NormalisingChecker(), optionflags=doctest.ELLIPSIS)
    runner.run(test, out=report.append, clear_globs=False)
    return ["".join(report)] if runner.failures else []


@pytest.mark.slow
@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: re.sub(r"\W+", "-", s).strip("-"))
def test_the_readme_examples_run_as_shown(
    section: str, tutorial_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tutorial_copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    namespace: dict[str, object] = {}
    mismatches = []
    for block in (b for b in BLOCKS if b.section == section):
        assert block.kind in ("console", "python"), f"README.md:{block.line}: {block.kind}?"
        if block.kind == "console":
            mismatches += run_console(block, tutorial_copy)
        else:
            mismatches += run_python(block, namespace)
    assert not mismatches, "\n\n".join(mismatches)


def test_the_readme_marks_examples_to_run() -> None:
    """The sections whose examples run: a block left unmarked by mistake shows here."""
    assert SECTIONS == [
        "The tutorial",
        "The command line",
        "Tracking: `@hydraflow.main`",
        "Results: `hydraflow.load` and `hydraflow runs`",
        "The sweep grammar in brief",
    ]
    assert len(BLOCKS) == 8


def test_the_readme_is_a_guide_of_at_most_600_lines() -> None:
    assert len(README.read_text().splitlines()) <= 600
