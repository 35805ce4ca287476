"""bench/run.py's tables: a size with no latency measured is reported, not divided by; the verdicts follow issue 15's targets."""
from __future__ import annotations

from types import SimpleNamespace

from bench.phases import Result
from bench.run import print_size_table, ratio_and_target
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


def _summary(ops: float, p99: float) -> dict:
    return {"ops_per_s": ops, "mb_per_s": None, "p50_ms": p99 / 2, "p99_ms": p99}


def test_event_target_is_a_fraction_of_the_reference_p99():
    assert ratio_and_target("event", _summary(100, 7.0), _summary(50, 20.0), {}) == (
        "0.35x p99", "ok p99≤0.35x ref; ok p99<ref"
    )
    assert ratio_and_target("event", _summary(100, 7.1), _summary(50, 20.0), {})[1].startswith("MISS p99≤0.35x ref")


def test_shared_writers_target_the_reference_rate_and_a_p99_bound():
    ours = {"vlob_create": _summary(900, 20.0)}
    _, verdict = ratio_and_target("vlob_create_shared", _summary(600, 99.0), _summary(100, 900.0), ours)
    assert verdict == "ok ≥5x; ok p99<100ms; ok ≥0.5x own vlob_create; ok p99<ref"
    _, verdict = ratio_and_target("vlob_create_shared", _summary(600, 101.0), _summary(100, 900.0), ours)
    assert "MISS p99<100ms" in verdict
