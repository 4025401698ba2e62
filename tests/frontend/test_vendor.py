"""Vendored third-party files are exactly the reviewed ones, each with its license."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import myapp

ROOT = Path(myapp.__file__).parent
VENDOR_DIRS = [
    ROOT / "frontend" / "static" / "vendor",
    ROOT / "backend" / "static",
    Path(__file__).parents[1] / "vendor",
]


def sums_files():
    return sorted(p for d in VENDOR_DIRS for p in d.rglob("SHA256SUMS"))


@pytest.mark.parametrize("sums", sums_files(), ids=lambda p: str(p.parent.name))
def test_checksums_match(sums: Path):
    lines = [line.split(maxsplit=1) for line in sums.read_text().splitlines() if line.strip()]
    assert lines
    listed = set()
    for digest, name in lines:
        path = (sums.parent / name.strip()).resolve()
        listed.add(path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"
    on_disk = {p.resolve() for p in sums.parent.rglob("*") if p.is_file()}
    on_disk -= {sums.resolve(), (sums.parent / "README.md").resolve()}
    assert on_disk == listed, "files without a checksum, or checksums without a file"


def test_every_vendored_package_has_a_license():
    packages = [p for d in VENDOR_DIRS for p in d.iterdir() if p.is_dir()]
    assert len(packages) >= 5
    for package in packages:
        assert any(f.name.startswith("LICENSE") for f in package.iterdir()), package
