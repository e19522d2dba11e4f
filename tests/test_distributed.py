"""alignkit.distributed.shard_map: one process, and two fake processes (two threads whose
gather meets at a barrier), give the same list in item order; and the tests' own launcher
guard, `conftest.run_launched`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from conftest import FakeProcesses, run_launched

from alignkit.distributed import Processes, shard_map


def test_one_process_is_a_plain_map():
    seen: list[int] = []

    def work(x: int) -> int:
        seen.append(x)
        return x * x

    assert shard_map([3, 1, 2], work) == [9, 1, 4]
    assert shard_map([3, 1, 2], work, Processes(0, 1), desc="squares") == [9, 1, 4]
    assert seen == [3, 1, 2, 3, 1, 2]
    assert shard_map([], work) == []


def test_two_processes_share_the_items_and_all_get_the_list_in_order():
    items = ["a", "b", "c", "d", "e"]
    fake = FakeProcesses(2)
    seen: dict[int, list[str]] = {0: [], 1: []}

    def on_process(rank: int) -> list:
        def work(x: str) -> str:
            seen[rank].append(x)
            return x.upper()

        return shard_map(items, work, Processes(rank, 2), gather=fake.gather_object)

    results = fake.run(on_process)
    assert results == [["A", "B", "C", "D", "E"]] * 2  # every process: the one-process list
    assert seen == {0: ["a", "c", "e"], 1: ["b", "d"]}  # items r, r + 2, r + 4, ...
    assert fake.calls == [1, 1]  # one gather call per process


def test_lockstep_calls_work_equally_often_and_drops_the_extra_results():
    fake = FakeProcesses(2)
    calls: dict[int, list[int]] = {0: [], 1: []}

    def on_process(rank: int) -> list:
        def work(x: int) -> int:
            calls[rank].append(x)
            return 10 * x

        state = Processes(rank, 2)
        return shard_map([1, 2, 3], work, state, lockstep=True, gather=fake.gather_object)

    assert fake.run(on_process) == [[10, 20, 30]] * 2
    # ceil(3 / 2) = 2 calls each: process 1 has only item 2, so it runs items[0] once more
    assert calls == {0: [1, 3], 1: [2, 1]}


def test_a_process_without_items_still_gathers_once():
    fake = FakeProcesses(2)
    results = fake.run(
        lambda rank: shard_map([7], str, Processes(rank, 2), gather=fake.gather_object)
    )
    assert results == [["7"], ["7"]] and fake.calls == [1, 1]


def test_a_launch_past_its_timeout_fails_and_leaves_no_process(tmp_path):
    """conftest.run_launched, which every 2-rank test uses: a launcher whose child never ends
    fails its test after `timeout` seconds, and the child (a stand-in rank) is killed too."""
    pid_file = tmp_path / "rank.pid"
    rank = "import time; time.sleep(120)"
    launcher = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {rank!r}])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('rank started', flush=True)\n"
        "time.sleep(120)\n"
    )
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="ran past 3 s(.|\n)*rank started"):
        run_launched([sys.executable, "-c", launcher], timeout=3)
    assert time.monotonic() - start < 30
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, killed and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
