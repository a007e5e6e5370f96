"""Atomic outputs: nothing half-written under a final name, and nothing a killed writer left behind."""

import os
import signal
import subprocess
import sys
import textwrap

from selectbench.io import atomic_dir


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_writer(tmp_path, caplog):
    """SIGKILL skips every cleanup: the hidden .<name>.<random>.tmp folder stays until the next writer of the
    same folder (one job per output) removes it; other hidden folders are left alone."""
    script = textwrap.dedent(f"""
        import os, signal
        from selectbench.io import atomic_dir
        with atomic_dir({str(tmp_path / "data")!r}) as tmp:
            (tmp / "pool.json").write_text("[]")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert run.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".data.")]
    assert len(left) == 1 and not (tmp_path / "data").exists()
    (tmp_path / ".data.other.tmp").mkdir()        # not a name mkdtemp makes for "data"
    (tmp_path / ".data.items.abcd1234.tmp").mkdir()  # a temporary folder of "data.items", another output
    with caplog.at_level("WARNING"), atomic_dir(tmp_path / "data") as tmp:
        (tmp / "pool.json").write_text("[1]")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.items.abcd1234.tmp", ".data.other.tmp", "data"]
    assert (tmp_path / "data" / "pool.json").read_text() == "[1]"
    assert any("left by a killed writer" in r.message for r in caplog.records)
    assert os.access(tmp_path / "data", os.R_OK)
