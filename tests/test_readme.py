"""The README's schema and rejection tables must match the code."""

from __future__ import annotations

from pathlib import Path

from urbanpulse.contract.messages import Reason
from urbanpulse.contract.vocabulary import MEASUREMENTS, VOCABULARY


def test_readme_schema_lists_every_measurement_and_field(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    schema = readme.split("## InfluxDB schema as built", 1)[1].split("\n## ", 1)[0]
    for measurement in MEASUREMENTS:
        row = next((line for line in schema.splitlines()
                    if line.startswith(f"| `{measurement}` |")), None)
        assert row is not None, f"{measurement} missing from the README schema"
        for field, q in VOCABULARY.items():
            if q.measurement == measurement:
                assert f"`{field}`" in row, f"{measurement}.{field} missing from the README"


def test_readme_names_every_rejection_reason(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    for reason in Reason:
        assert f"| `{reason.value}` |" in readme, reason
