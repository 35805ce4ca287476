"""bench/run.py's size table: a size with no latency measured is reported, not divided by."""
from __future__ import annotations

from types import SimpleNamespace

from bench.phases import Result
from bench.run import print_size_table
from bench.sizes import LARGE, SIZE_PHASES, SMALL


def _args(phase: str) -> SimpleNamespace:
    return SimpleNamespace(
        phase_list=[phase], server_list=["ours"], small_shape=SMALL, large_shape=LARGE, size_connections=1
    )


def _result(phase: str, small_p50: float | None, large_p50: float | None) -> Result:
    result = Result(phase=phase, server="ours", ops=10)
    result.extra = {
        "small": {"p50_ms": small_p50, "p99_ms": 2.0},
        "large": {"p50_ms": large_p50, "p99_ms": 3.0},
    }
    return result


def _row(output: str, phase: str) -> list[str]:
    [line] = [line for line in output.splitlines() if line.startswith(f"| {phase} ")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_size_table_without_a_latency_shows_no_ratio_nor_verdict(capsys):
    phase = sorted(SIZE_PHASES)[0]
    print_size_table(_args(phase), {phase: {"ours": [_result(phase, None, 1.5)]}})
    assert _row(capsys.readouterr().out, phase) == [phase, "ours", "-", "2.00", "1.50", "3.00", "-", "1.50x", "-"]


def test_size_table_with_every_latency_judges_the_ratios(capsys):
    phase = sorted(SIZE_PHASES)[0]
    print_size_table(_args(phase), {phase: {"ours": [_result(phase, 1.0, 1.5)]}})
    assert _row(capsys.readouterr().out, phase) == [phase, "ours", "1.00", "2.00", "1.50", "3.00", "1.50x", "1.50x", "ok"]
