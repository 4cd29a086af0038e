"""The repository's own documentation: self-contained, complete for the objectives, and with working links.

* No file of the repository points at material outside it (the internal specification or the shared folder that
  the package's users never have); docs/methods.md is the methods reference.
* docs/methods.md names every objective registered in the objective registry, and every test its "Tested by"
  table cites exists.
* Every relative link of README.md, DESIGN.md and docs/*.md points at an existing file (and heading).
"""

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS = ROOT / "docs" / "methods.md"
# Spelled in pieces so that this file does not contain what it looks for.
FORBIDDEN = ("../" + "shared", "SPEC" + ".md")


def repository_files() -> list[Path]:
    """Tracked files plus new files git does not ignore (a file about to be committed is checked too)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no file list")
    paths = {ROOT / name for name in listing.decode("utf-8", "surrogateescape").split("\0") if name}
    return sorted(path for path in paths if path.is_file())


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def test_no_file_points_outside_the_repository():
    offenders = []
    for path in repository_files():
        data = path.read_bytes()
        if is_binary(data):
            continue
        text = data.decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            for needle in FORBIDDEN:
                if needle in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {needle!r}")
    assert not offenders, "point these at docs/methods.md instead:\n" + "\n".join(offenders)


def test_methods_doc_names_every_registered_objective():
    import molformer_kd.distillation  # noqa: F401  (importing the package registers every objective)
    from molformer_kd.distillation.registry import OBJECTIVES

    text = METHODS.read_text(encoding="utf-8")
    assert OBJECTIVES, "the registry is empty"
    missing = sorted(name for name in OBJECTIVES if f"`{name}`" not in text)
    assert not missing, f"docs/methods.md does not describe the registered objectives {missing}"


def test_methods_doc_cites_existing_tests():
    text = METHODS.read_text(encoding="utf-8")
    cited = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text))
    assert len(cited) > 20, "the Tested by table cites (almost) no tests"
    missing = []
    for file, function in sorted(cited):
        path = ROOT / file
        defined = path.is_file() and re.search(rf"^\s*def {function}\(", path.read_text(encoding="utf-8"), re.MULTILINE)
        if not defined:
            missing.append(f"{file}::{function}")
    assert not missing, f"docs/methods.md cites tests that do not exist: {missing}"


# ------------------------------------------------------------------------------------------------ links

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "DESIGN.md", *sorted((ROOT / "docs").glob("*.md"))]


def without_code(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_anchor(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped (letters, digits, '-', '_', spaces kept), spaces -> '-'."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    kept = "".join(c for c in heading if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen, result = {}, set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def links(path: Path) -> list[str]:
    text = without_code(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text) + HTML_LINK.findall(text)


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(document):
    assert document.is_file(), f"{document.relative_to(ROOT)} is missing"
    broken = []
    for target in links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:, ...
            continue
        file_part, _, fragment = target.partition("#")
        destination = (document.parent / file_part).resolve() if file_part else document
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target} (no heading #{fragment} in {destination.name})")
    assert not broken, f"{document.relative_to(ROOT)} has broken links: {broken}"


def test_link_checker_sees_links_and_anchors():
    """The checker itself: it finds the links of docs/methods.md and GitHub's ids of its headings."""
    assert any(target.startswith("#") for target in links(METHODS))
    assert github_anchor("3. D&D: denoise and distill") == "3-dd-denoise-and-distill"
    assert github_anchor("`task` objective (KD-GNN)") == "task-objective-kd-gnn"
    assert "atom-rule" in anchors(METHODS)
