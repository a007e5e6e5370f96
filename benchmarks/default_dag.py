"""Wall time of the default run, as a new user meets it: `snakemake --cores all` on the embedded default, then a
second invocation that must find nothing to do.

Usage:
  python benchmarks/default_dag.py --fresh-clone            # clone HEAD, run the README's install command, then
                                                            # the DAG with the clone's own .venv (the must-reach)
  python benchmarks/default_dag.py [--configfile X.yaml]    # this checkout's venv, results in a temporary folder
Options: --keep DIR (work there instead of a temporary folder), --json OUT (write the timings).
Prints each step's wall seconds and the resulting table (results/tables/digits.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'"


def timed(cmd: list[str] | str, cwd: Path, log: Path) -> float:
    start = time.time()
    with open(log, "w") as fh:
        subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), stdout=fh, stderr=subprocess.STDOUT, check=True)
    return time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh-clone", action="store_true")
    parser.add_argument("--configfile", nargs="*", default=[])
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="selectbench-dag-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    extra = ["--configfile", *[str(Path(c).resolve()) for c in a.configfile]] if a.configfile else []
    if a.fresh_clone:
        clone = work / "selectbench"
        if clone.exists():
            shutil.rmtree(clone)
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        timings["install_s"] = timed(INSTALL, clone, work / "install.log")
        cmd, cwd = [str(clone / ".venv" / "bin" / "snakemake"), "--cores", "all", *extra], clone
    else:
        cmd, cwd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "all",
                    "--directory", str(work), *extra], ROOT
    timings["dag_s"] = timed(cmd, cwd, work / "dag.log")
    timings["noop_s"] = timed(cmd, cwd, work / "noop.log")
    results = (clone if a.fresh_clone else work) / "results"
    report = {"timings": {k: round(v, 1) for k, v in timings.items()}, "work": str(work),
              "machine": f"{platform.machine()}, {platform.processor() or '?'}, {os_cpus()} cores",
              "nothing_to_do": "Nothing to be done" in (work / "noop.log").read_text()}
    print(json.dumps(report, indent=1))
    print((results / "tables" / "digits.md").read_text())
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


def os_cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
