"""The README fits on a screen and the docs beside it hold the reference: every command and exit
code is documented, and every relative link resolves, to a file and to a heading in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sqlmig.cli.main import _COMMANDS
from sqlmig.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in page.read_text().splitlines():
        if m := re.match(r"^#{1,6} (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_the_readme_fits_on_a_screen() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_relative_to(REPO), f"{page.name}: {target} points outside the repository"
        assert dest.exists(), f"{page.name}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: {target}: no such heading"


def test_every_command_and_exit_code_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    reference = (REPO / "docs" / "commands.md").read_text()
    for command in _COMMANDS:
        assert f"`sqlmig {command}" in readme, command
        assert f"`{command}" in reference or f"sqlmig {command}" in reference, command
    codes = re.findall(r"^\| (\d) \|", readme, re.M)
    assert codes == [str(v) for v in sorted({v for k, v in vars(ExitCode).items() if k.isupper()})]
