"""Kill points: SIGKILL one job of each rule kind at a point inside it (mid-write, mid-shard, mid-training), and
the Snakemake driver itself, then rerun `snakemake`; the tables must be byte-identical to those of an uninterrupted
run. And a feature shard killed under one proxy configuration and rerun under a changed one must give the tables
of a clean run of the changed configuration.

Everything runs through the real snakemake CLI on the tiny config, narrowed (run_methods) to random (the report's
baseline) and xmas, so that the DAG (prepare, base models, proxy fine-tune, sharded features, gather, score,
select, export, training, evaluation, report) reaches the tables in about a minute; clip_model and gradient_warmup,
which only clip_score and gradient need, are left out. The same-configuration kill points are taken one after
another in one run from nothing: each kill is followed by a rerun that resumes the killed work and goes on until
the next point is reached, and the last rerun finishes the DAG. A kill that changed a subset, a model or an
evaluation would show in the tables."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import TINY
from tests.workflow.test_dag import SNAKEMAKE

# target checkpoints every 4 steps (8-step subset trainings, 15-step full-data one) so that training can be killed
# after a checkpoint and resume from it
NARROW = {"run_methods": ["random", "xmas"], "models": {"target": {"finetune": {"save_steps": 4}}}}
# a change that reaches the proxy, and through its checkpoints every feature shard and the xmas subset
CHANGED_PROXY = {"models": {"proxy": {"finetune": {"lr": 5.0e-4}}}}
# seconds for any one wait, as test_dag allows the tiny DAG: the narrowed DAG takes about a minute alone, and
# over five when other work shares the two cores
TIMEOUT = 900


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("kill-configs")
    (folder / "narrow.yaml").write_text(yaml.safe_dump(NARROW))
    (folder / "changed.yaml").write_text(yaml.safe_dump(CHANGED_PROXY))
    return {"same": [TINY, folder / "narrow.yaml"], "changed": [TINY, folder / "narrow.yaml", folder / "changed.yaml"]}


class Driver:
    """One `snakemake` invocation in its own session, its console in a log file beside the results."""

    def __init__(self, workdir: Path, configs: list[Path], *targets: str, name: str = "run"):
        self.log = workdir / f"driver-{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*SNAKEMAKE, *targets, "--directory", str(workdir), "--cores", "2",
                 "--configfile", *map(str, configs)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def jobs(self, needle: tuple[str, ...]) -> list[psutil.Process]:
        """The live processes of the driver's jobs whose command line contains every string of needle (the job's
        shell and its python)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                line = " ".join(child.cmdline())
                if all(part in line for part in needle):
                    found.append(child)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                pass
        return found

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)

    def kill_all(self) -> None:
        """Whatever is left of this invocation: the driver's session (its jobs included) and any orphan job."""
        for child in _descendants(self.proc.pid):
            _kill(child)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        pass


def _alive(procs: list[psutil.Process]) -> bool:
    """Any still running (an orphan that has exited may stay a zombie until PID 1 reaps it)."""
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            pass
    return False


def _wait_gone(procs: list[psutil.Process], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(procs)


@dataclass
class KillPoint:
    name: str
    rule: str                           # the rule whose job is killed ("" for the driver)
    needle: tuple[str, ...]             # strings of the job's command line that single it out
    reached: Callable[[Path], bool]     # True once the point inside the job is reached (workdir given)
    poll: float = 0.005                 # seconds between looks: narrow windows (a checkpoint being saved) need few


def _exists(pattern: str) -> Callable[[Path], bool]:
    return lambda workdir: any(workdir.glob(pattern))


def _log_has(log: str, text: str) -> Callable[[Path], bool]:
    def reached(workdir: Path) -> bool:
        path = workdir / log
        return path.exists() and text in path.read_text(errors="replace")
    return reached


def _running(workdir: Path) -> bool:  # kill as soon as the job is seen: seconds-long steps have no later point
    return True


DS = "results/digits"
# shard 0 of the trajectories has finished its first part (one proxy checkpoint of three)
SHARD_POINT = KillPoint(
    "feature_shard", "feature_shard", ("--feature attention_trajectories", "--shard 0 "),
    _exists(f"{DS}/features/attention_trajectories/*/shard0-of-2.npz.parts/part0000.npz"))
# In DAG order along xmas's chain, so that each point's job is still to come when the rerun before it starts.
POINTS = [
    # atomic_dir's temporary folder of the data exists: prepare is writing the pool
    KillPoint("prepare_data", "prepare_data", ("selectbench.cli prepare",), _exists(f"{DS}/.data.*.tmp")),
    # the assembled proxy base is being written into its temporary folder
    KillPoint("base_model", "base_model", ("selectbench.cli base", f"--out {DS}/base/proxy "),
              _exists(f"{DS}/base/proxy/.model.*.tmp")),
    # the first checkpoint folder appears: the Trainer is most often still writing into it
    KillPoint("proxy_finetune", "proxy_finetune", ("selectbench.cli finetune", "--checkpoint-list"),
              _exists(f"{DS}/proxy/finetune/checkpoints/checkpoint-*"), poll=0.001),
    SHARD_POINT,
    KillPoint("feature_gather", "feature_gather", ("selectbench.cli feature-gather",), _running),
    KillPoint("score", "score", ("selectbench.cli score", f"--out {DS}/scores/xmas.npz"), _running),
    KillPoint("select", "select", ("selectbench.cli select", f"--out {DS}/subsets/xmas/"), _running),
    # after the first complete checkpoint (step 4 of 8) of the xmas subset's training
    KillPoint("train_target", "train_target", ("selectbench.cli finetune", f"--subset {DS}/subsets/xmas/"),
              _exists(f"{DS}/target/xmas/r0.5_s0/checkpoints/checkpoint-*/loss_sum.json")),
    # the driver, while that training runs again
    KillPoint("driver", "", ("selectbench.cli finetune", f"--subset {DS}/subsets/xmas/"), _running, poll=0.05),
    # the xmas model's evaluation has begun its first benchmark
    KillPoint("evaluate", "evaluate", ("selectbench.cli evaluate", f"--out {DS}/eval/xmas/"),
              _log_has("results/logs/digits/evaluate_xmas_r0.5_s0.log", "pope:")),
    # the long table is written, the Markdown and the rest are not yet
    KillPoint("report", "report", ("selectbench.cli report",), _exists("results/tables/digits.csv")),
]


def _kill_at(driver: Driver, point: KillPoint, workdir: Path) -> list[psutil.Process]:
    """Wait for the point's job, then for the point inside it, and SIGKILL the job's processes (its shell and its
    python; the driver is left to notice, as it would a job killed by the OOM killer or a node failure). Snakemake's
    local executor starts jobs in the driver's own process group, so a killpg would take the driver too. Returns the
    processes killed, or for the driver point the jobs it leaves running."""
    deadline = time.monotonic() + TIMEOUT
    procs: list[psutil.Process] = []
    while time.monotonic() < deadline:
        if driver.proc.poll() is not None:
            pytest.fail(f"{point.name}: the run ended (exit {driver.proc.returncode}) before the point was reached:\n"
                        + driver.text()[-3000:])
        if not procs:
            procs = driver.jobs(point.needle)
            if not procs:
                time.sleep(0.01)
                continue
        if not _alive(procs):
            pytest.fail(f"{point.name}: the job ended before the point inside it was reached")
        if point.reached(workdir):
            if point.rule:
                # the processes as they are now: the job's shell may have started its python since it was found,
                # and a shell killed alone would leave that python to finish the job behind the driver's back
                victims = [d for proc in procs for d in _descendants(proc.pid)] + procs
                for proc in victims:
                    _kill(proc)
                assert _wait_gone(victims, timeout=60)
                return victims
            # every job the driver runs now: Snakemake's local executor leaves them running when the driver dies
            orphans = _descendants(driver.proc.pid)
            driver.proc.send_signal(signal.SIGKILL)
            driver.proc.wait(timeout=30)
            return orphans
        time.sleep(point.poll)
    pytest.fail(f"{point.name}: not reached within {TIMEOUT} s")


def _finish(workdir: Path, configs: list[Path], name: str) -> Driver:
    driver = Driver(workdir, configs, name=name)
    try:
        rc = driver.wait()
    finally:
        driver.kill_all()
    assert rc == 0, driver.text()[-4000:]
    return driver


TABLE_SUFFIXES = (".csv", ".md")


def tables(workdir: Path) -> dict[str, bytes]:
    """The tables a run publishes, but the cost tables: those hold the jobs' wall and CPU seconds."""
    return {p.name: p.read_bytes() for p in sorted((workdir / "results" / "tables").iterdir())
            if p.suffix in TABLE_SUFFIXES and not p.stem.endswith("_costs")}


def _code(workdir: Path) -> str:
    return json.loads((workdir / "results" / "tables" / "digits.provenance.json").read_text())["code"]


def assert_same_tables(got: Path, expected: Path) -> None:
    a, b = tables(got), tables(expected)
    code_a, code_b = _code(got), _code(expected)
    if code_a != code_b:
        # a commit landed in this checkout between the two runs: the tables name the code that made them
        # (selectbench.versions.code_version), so that name, and nothing else, may differ
        a = {name: data.replace(code_a.encode(), b"<code>") for name, data in a.items()}
        b = {name: data.replace(code_b.encode(), b"<code>") for name, data in b.items()}
    assert sorted(a) == sorted(b)
    differing = [name for name in b if a[name] != b[name]]
    if differing:
        # where the runs parted: the subsets and evaluation rows that differ, then the first table's diff
        parted = [str(p.relative_to(expected)) for pattern in ("results/digits/subsets/*/*.json",
                                                                "results/digits/eval/*/*.csv")
                  for p in sorted(expected.glob(pattern)) if not p.name.endswith(".meta.json")  # code named
                  if not (got / p.relative_to(expected)).exists()
                  or (got / p.relative_to(expected)).read_bytes() != p.read_bytes()]
        diff = difflib.unified_diff(b[differing[0]].decode().splitlines(), a[differing[0]].decode().splitlines(),
                                    "expected", "got", lineterm="", n=1)
        pytest.fail(f"tables differ: {differing}; intermediate files that differ: {parted}\n"
                    + "\n".join(list(diff)[:40]))


def leftovers(workdir: Path) -> list[str]:
    """Half-written state that a finished run must not keep: temporary folders (atomic_dir) and shard parts."""
    results = workdir / "results"
    found = [p for p in results.rglob(".*.tmp") if p.is_dir()] + list(results.rglob("*.parts"))
    return [str(p.relative_to(workdir)) for p in found]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, configs) -> Path:
    """The narrowed tiny DAG run once, uninterrupted: the tables every kill point must reproduce."""
    workdir = tmp_path_factory.mktemp("kill-reference")
    _finish(workdir, configs["same"], "reference")
    return workdir


def test_sigkill_at_every_point_then_rerun_gives_the_uninterrupted_tables(reference, configs, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    killed = []
    for point in POINTS:
        driver = Driver(workdir, configs["same"], name=point.name)
        try:
            procs = _kill_at(driver, point, workdir)
            if point.rule:
                # the driver waits for its other running jobs, then stops on the killed one
                assert driver.wait() != 0
                assert re.search(rf"Error in rule {point.rule}:", driver.text()), driver.text()[-3000:]
            else:
                # the killed driver's jobs run on as orphans; let them end (at most one training) before the
                # rerun, which would otherwise start the same job a second time beside them
                assert _wait_gone(procs), f"orphans still running: {procs}"
                # the dead driver's lock stays behind; --unlock is Snakemake's remedy
                unlock = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--unlock", "--configfile",
                                         *map(str, configs["same"])], capture_output=True, text=True, timeout=120,
                                        check=False)
                assert unlock.returncode == 0, unlock.stderr[-2000:]
        finally:
            driver.kill_all()
        killed.append(point.name)
    _finish(workdir, configs["same"], "final")
    assert killed == [p.name for p in POINTS] and len(set(killed)) >= 10
    assert_same_tables(workdir, reference)
    assert not leftovers(workdir)


def test_shard_killed_under_one_proxy_and_rerun_under_a_changed_one_gives_the_clean_tables(reference, configs,
                                                                                            tmp_path):
    """The shard's parts from the first proxy must be discarded, not resumed (selectbench.features.job_fingerprint).
    The clean run of the changed config starts, as the killed one does, from the finished reference: Snakemake
    reruns everything the change reaches (the proxy fine-tune and all that follows from it)."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    shutil.copytree(reference, clean, symlinks=True)
    shutil.copytree(reference, killed, symlinks=True)
    _finish(clean, configs["changed"], "changed")
    assert tables(clean)["digits.csv"] != tables(reference)["digits.csv"], \
        "the changed proxy must change the results, or this test could not see parts of the first one resumed"

    shard = next(killed.glob(f"{DS}/features/attention_trajectories/*/shard0-of-2.npz"))
    shard.unlink()
    target = str(shard.relative_to(killed))
    driver = Driver(killed, configs["same"], target, name="shard")
    try:
        _kill_at(driver, SHARD_POINT, killed)
        assert driver.wait() != 0
    finally:
        driver.kill_all()
    assert (killed / (target + ".parts") / "part0000.npz").exists()  # the first proxy's part, left behind

    _finish(killed, configs["changed"], "changed")
    assert_same_tables(killed, clean)
    assert not leftovers(killed)
