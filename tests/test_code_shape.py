"""Issue 16's rules for the package's code, checked on every run: no function over 50 lines
(its docstring and nested functions counted), driver.py under 300 lines, and every
``type: ignore`` or ``noqa`` saying why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "devicefit"
# A suppression followed by its reason: "- why", ": why" or "# why" after the codes.
EXPLAINED = re.compile(
    r"(type: ignore\[[a-z-]+(, ?[a-z-]+)*\]|noqa: [A-Z0-9]+(, ?[A-Z0-9]+)*) *[-—:#] *\S"
)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_longer_than_50_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
        for path in _sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > 50
    ]
    assert not long, long


def test_the_driver_keeps_under_300_lines() -> None:
    assert len((PACKAGE / "search" / "driver.py").read_text().splitlines()) < 300


def test_every_suppression_says_why() -> None:
    bare = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ("type: ignore" in line or "noqa" in line) and not EXPLAINED.search(line)
    ]
    assert not bare, bare
