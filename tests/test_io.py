"""`alignkit.io`: atomic writes."""

from __future__ import annotations

from pathlib import Path


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    """Outputs are written to a temporary file (mkstemp: mode 0600) and renamed; they end with
    the mode any other new file gets under the process umask."""
    import os

    from alignkit.io import atomic_write_text

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_text(tmp_path / "out.json", "{}")
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask
