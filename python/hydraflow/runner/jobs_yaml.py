"""The jobs file's YAML: PyYAML's safe loading, noting every key given twice
in one mapping. PyYAML keeps the last silently, so a set's second `each`
would drop its first, and a job defined twice would hide the first one.

Imported only when a jobs file is read: `hydraflow --help` never loads PyYAML.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# `<<: *base` merges a mapping in; the node's own keys then override the
# merged ones on purpose, so only the node's own keys are compared.
MERGE_TAG = "tag:yaml.org,2002:merge"

# A node's place in the document: ("jobs", "a", "sets", 0).
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class DuplicateKey:
    """`key` is given twice in the mapping at `path`."""

    path: Path
    key: str
    line: int
    first_line: int

    @property
    def where(self) -> str:
        return dotted(self.path)

    @property
    def message(self) -> str:
        lines = (
            f"on line {self.line} (twice on that line)"
            if self.line == self.first_line
            else f"on line {self.line} (first on line {self.first_line})"
        )
        return f"duplicate key '{self.key}' {lines}; YAML would keep only the last"


def dotted(path: Path) -> str:
    """`jobs.a.sets[0]`, as the jobs file's other errors name places."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


class JobsFileLoader(yaml.SafeLoader):
    """SafeLoader that notes every key given twice in one of a document's
    mappings, before constructing it: PyYAML flattens `<<` merges into a
    mapping's own keys as it constructs it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.duplicates: list[DuplicateKey] = []
        # The line of every string holding `${` (an OmegaConf interpolation),
        # by its place: where a failed one is reported.
        self.interpolation_lines: dict[Path, int] = {}
        self.wants_lines = "${" in text

    def construct_document(self, node: Node) -> Any:
        for mapping, path in mappings_of(node):
            self.note_duplicates(mapping, path)
        document = super().construct_document(node)
        if self.wants_lines:  # after: the `<<` merges are flattened in now
            self.interpolation_lines = dict(interpolations_of(node))
        return document

    def note_duplicates(self, node: MappingNode, path: Path) -> None:
        first_lines: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue  # a collection as a key: PyYAML's own error says so
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_lines:
                self.duplicates.append(DuplicateKey(path, str(key), line, first_lines[key]))
            else:
                first_lines[key] = line


def mappings_of(root: Node) -> Iterator[tuple[MappingNode, Path]]:
    """Every mapping of a document with its path from the root, in the file's
    order (an anchored one once, at its anchor)."""
    seen: set[Node] = set()
    pending: list[tuple[Node, Path]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        children: list[tuple[Node, Path]] = []
        if isinstance(node, MappingNode):
            yield node, path
            children = [(value, (*path, key_text(key))) for key, value in node.value]
        elif isinstance(node, SequenceNode):
            children = [(item, (*path, index)) for index, item in enumerate(node.value)]
        pending.extend(reversed(children))


# How deep the jobs file's strings lie: jobs.JOB.sets[i].each[j] is 6 deep.
INTERPOLATION_DEPTH = 6


def interpolations_of(node: Node, path: Path = ()) -> Iterator[tuple[Path, int]]:
    """The place and line of every string holding `${`, at most
    INTERPOLATION_DEPTH deep (an alias met twice is walked twice: a merged
    job's strings are at their own place too)."""
    if isinstance(node, ScalarNode):
        if "${" in str(node.value):
            yield path, node.start_mark.line + 1
    elif len(path) < INTERPOLATION_DEPTH and isinstance(node, MappingNode):
        for key, value in node.value:
            yield from interpolations_of(value, (*path, key_text(key)))
    elif len(path) < INTERPOLATION_DEPTH and isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from interpolations_of(item, (*path, index))


def key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else "?"


@dataclass(frozen=True)
class Loaded:
    """A jobs file's document, the keys given twice in it (in the file's
    order) and the line of each string holding `${`, by its place."""

    document: Any
    duplicates: list[DuplicateKey]
    interpolation_lines: dict[Path, int]


def load(text: str) -> Loaded:
    """Raises yaml.YAMLError as yaml.safe_load does."""
    loader = JobsFileLoader(text)
    try:
        document = loader.get_single_data()
        return Loaded(document, loader.duplicates, loader.interpolation_lines)
    finally:
        loader.dispose()
