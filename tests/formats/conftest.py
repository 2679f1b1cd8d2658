"""Shared helpers of the format tests: where the sample files are, and how a sample case is found."""
from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
NOT_FORMAT_SAMPLES = ("nights", "bad")  # the pipeline's end-to-end nights and the bad-input corpus


def sample_cases() -> list[Path]:
    """Every `<case>.expected.json` under sample_files/<family>/<kind>/."""
    return sorted(p for p in SAMPLES.rglob("*.expected.json")
                  if p.relative_to(SAMPLES).parts[0] not in NOT_FORMAT_SAMPLES)


def layout_of(expected: Path) -> str:
    """sample_files/<family>/<kind>/<case>.expected.json -> the layout name `family.kind`."""
    family, kind = expected.relative_to(SAMPLES).parts[:2]
    return f"{family}.{kind}"


def data_file(expected: Path) -> Path:
    """The sample file a `<case>.expected.json` describes: `<case>.<ext>` beside it (not its `.ok` flag)."""
    stem = expected.name[: -len(".expected.json")]
    found = [p for p in expected.parent.glob(f"{stem}.*")
             if p != expected and not p.name.endswith(".ok") and p.name[len(stem)] == "."
             and "." not in p.name[len(stem) + 1:]]
    assert len(found) == 1, f"{expected}: expected one data file, found {found}"
    return found[0]
