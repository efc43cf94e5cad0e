"""YAML for parameters: ``yaml.safe_load`` with a bound on what aliases expand to.

A 1 KB file of nine nested anchors (``&a [x, x, ...]``, ``&b [*a, *a, ...]``, ...) loads
cheaply, because PyYAML shares the aliased objects, but expands to ~10^9 values in whatever
walks it next (pydantic validation, ``json.dumps`` into run.json, an error message quoting
it): the "billion laughs" attack. Parameter files are small, so the expanded size is counted
on the parsed node graph before any object is built, and a document past the bound is refused.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from quantnb.errors import ConfigError

__all__ = ["MAX_EXPANDED_NODES", "safe_load_bounded"]

MAX_EXPANDED_NODES = 100_000  # scalars, lists and mappings, counting each alias use in full


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expanded_size(root: Node, limit: int) -> int:
    """Values ``root`` expands to (each alias use counted in full), or ``limit + 1`` past the bound."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
            continue
        if key in sizes:
            continue
        if key in open_:  # a recursive alias (&a [*a]) expands without end
            return limit + 1
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a document expanding past :data:`MAX_EXPANDED_NODES`."""

    source = "YAML"

    def construct_document(self, node: Node) -> Any:
        """Check the expanded size of ``node``, then build it as SafeLoader does."""
        if _expanded_size(node, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{self.source}: the YAML expands to more than {MAX_EXPANDED_NODES:,} values through "
                f"aliases (*name) of anchors (&name), starting line {node.start_mark.line + 1}: nested or "
                "recursive aliases (an 'alias bomb'); write the values out, without nesting aliases")
        return super().construct_document(node)


def safe_load_bounded(text: str, *, source: str = "YAML") -> Any:
    """Parse ``text`` as ``yaml.safe_load`` does, refusing aliases that expand past a bound."""
    loader = _BoundedLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
