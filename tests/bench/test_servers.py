"""bench/: the `ours-<server>` kinds (our application under another ASGI server) are optional. One whose
server is not installed is left out of the run with the package to install, never a crash; the table
compares each one that ran with daphne (`ours`)."""
from __future__ import annotations

import importlib.machinery
import importlib.util

import pytest

from bench import servers
from bench.phases import Result
from bench.run import parse_args, print_table

REAL_FIND_SPEC = importlib.util.find_spec


@pytest.fixture
def granian_not_installed(monkeypatch):
    # Pure unit test of the CLI: the only thing faked is whether the candidates' modules can be found
    # (granian not, the others yes, whatever this machine has installed: CI installs none of them).
    candidate_modules = {module for modules, _ in servers.ASGI_CANDIDATES.values() for module in modules}

    def find_spec(name, *args):
        if name == "granian":
            return None
        if name in candidate_modules:
            return importlib.machinery.ModuleSpec(name, None)
        return REAL_FIND_SPEC(name, *args)

    monkeypatch.setattr(servers.importlib.util, "find_spec", find_spec)


def test_every_candidate_names_the_modules_it_needs_and_serves_our_application():
    for kind, (modules, command) in servers.ASGI_CANDIDATES.items():
        assert kind.startswith("ours-") and kind in servers.SERVER_KINDS
        assert modules and all(isinstance(module, str) for module in modules)
        assert servers.ASGI_APP in command and "{port}" in " ".join(command)


def test_a_server_that_is_not_installed_is_left_out_saying_what_to_install(granian_not_installed):
    args = parse_args(["--servers", "ours,ours-granian", "--phases", "ping"])
    assert args.server_list == ["ours"]
    assert args.missing_servers == {"ours-granian": "not installed: granian (.venv/bin/pip install granian)"}


def test_no_server_left_is_a_usage_error(granian_not_installed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--servers", "ours-granian", "--phases", "ping"])
    assert exit_info.value.code == 2
    assert "no server left to run: ours-granian: not installed: granian" in capsys.readouterr().err


def _result(server: str, ops_per_s: float, server_cpu: float) -> Result:
    return Result(phase="ping", server=server, ops=100, ops_per_s=ops_per_s, p50_ms=1.0, p99_ms=2.0,
                  server_cpu=server_cpu)


def test_the_table_compares_each_candidate_with_daphne(granian_not_installed, capsys):
    args = parse_args(["--servers", "ours,ours-uvicorn,ours-granian", "--phases", "ping", "--rounds", "1"])
    print_table(args, {"ping": {"ours": [_result("ours", 1000, 50)], "ours-uvicorn": [_result("ours-uvicorn", 1500, 50)]}})
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("| ping ")]
    assert [cell.strip() for cell in row.strip("|").split("|")][-1] == "1.50x p99 1.00x"
    assert "uvicorn/ours" in out
    assert "ping: ours 2000, ours-uvicorn 3000; /ours: uvicorn 1.50x" in out
    assert "ours-granian: left out of this run, not installed: granian" in out
