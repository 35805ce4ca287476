"""`manage.py run` and `migrate` as an operator runs them: real processes, real ports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pgcluster import PgCluster, free_port

MANAGE_PY = Path(__file__).resolve().parents[2] / "manage.py"
START_TIMEOUT = 30


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without the tests' server settings, plus `variables`."""
    removed = ("PARSEC_", "DEBUG", "DJANGO_")
    environ = {name: value for name, value in os.environ.items() if not name.startswith(removed)}
    environ.update(variables)
    return environ


def manage(*args: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MANAGE_PY), *args], cwd=cwd, env=clean_environment(**variables),
        capture_output=True, text=True, timeout=120,
    )


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    stdout: str = ""
    stderr: str = ""


def http_status(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@contextmanager
def running(*args: str, cwd: Path, **variables: str) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "run", "--port", str(port), *args], cwd=cwd,
        env=clean_environment(**variables), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    server = Server(process=process, port=port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # `/ws` without upgrade answers 400: any HTTP answer means the server is up.
        while http_status(port, "/ws") is None:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stdout, server.stderr = process.communicate(timeout=10)
                pytest.fail(f"server did not start (exit {process.returncode}):\n{server.stdout}\n{server.stderr}")
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        server.stdout += out
        server.stderr += err


def test_dev_start(tmp_path: Path) -> None:
    with running("--dev", cwd=tmp_path) as server:
        assert http_status(server.port, "/ws") == 400
    assert server.process.returncode == 0  # SIGTERM is a clean stop
    assert (
        f"Starting Parsec Backend on 127.0.0.1:{server.port} (db=MOCKED blockstore=MOCKED email=MOCKED "
        f"backend_addr=parsec://localhost:{server.port})"
    ) in server.stdout.splitlines()
    assert f"--addr 'parsec://localhost:{server.port}?no_ssl=true' --administration-token s3cr3t" in server.stdout
    assert list(tmp_path.iterdir()) == []  # MOCKED leaves nothing behind


def test_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running("--data-dir", str(data_dir), cwd=tmp_path) as first:
        pass
    token = (data_dir / "administration_token").read_text().strip()
    assert f"Administration token (generated, kept in {data_dir / 'administration_token'}): {token}" in first.stdout
    assert f"db=SQLITE blockstore=LOCAL email=MOCKED backend_addr=parsec://localhost:{first.port}?no_ssl=true" \
        in first.stdout
    assert (data_dir / "parsec.sqlite3").is_file() and (data_dir / "blocks").is_dir()
    assert "python manage.py create_organization <NAME>" in first.stdout

    with running(cwd=tmp_path, PARSEC_DATA_DIR=str(data_dir)) as second:
        pass
    assert second.process.returncode == 0
    assert token not in second.stdout
    assert (data_dir / "administration_token").read_text().strip() == token


@pytest.fixture
def fresh_postgresql_database() -> str:
    port = os.environ.get("PARSEC_TEST_PG_PORT")
    if port is None:
        pytest.skip("needs the PostgreSQL test cluster (--db=postgresql)")
    cluster = PgCluster(data_dir=Path("/nonexistent"), port=int(port), process_owner=None)
    return cluster.create_database(f"run_{uuid.uuid4().hex[:12]}")


def test_postgresql_needs_migrate_first(tmp_path: Path, fresh_postgresql_database: str) -> None:
    options = [
        "--db", fresh_postgresql_database, "-b", "POSTGRESQL", "--administration-token", "t0k3n",
        "--backend-addr", "parsec://parsec.example.com", "--email-host", "MOCKED",
    ]
    refused = manage("run", "--port", str(free_port()), *options, cwd=tmp_path, DJANGO_SECRET_KEY="k")
    assert refused.returncode != 0
    assert "unapplied migration" in refused.stderr and "run `python manage.py migrate`" in refused.stderr

    migrated = manage("migrate", "--db", fresh_postgresql_database, cwd=tmp_path, DJANGO_SECRET_KEY="k")
    assert migrated.returncode == 0, migrated.stderr

    with running(*options, cwd=tmp_path, DJANGO_SECRET_KEY="k") as server:
        assert http_status(server.port, "/ws") == 400
    assert "(db=POSTGRESQL blockstore=POSTGRESQL email=MOCKED backend_addr=parsec://parsec.example.com)" \
        in server.stdout
    assert "t0k3n" not in server.stdout + server.stderr


def test_postgresql_over_its_unix_socket(tmp_path: Path, fresh_postgresql_database: str) -> None:
    # A PostgreSQL on the same host, reached without TCP: the URL names no host, the socket's folder is `host=`.
    database = fresh_postgresql_database.rsplit("/", 1)[1]
    socket_dir, port = os.environ["PARSEC_TEST_PG_SOCKET_DIR"], os.environ["PARSEC_TEST_PG_PORT"]
    url = f"postgresql:///{database}?host={socket_dir}&port={port}&user=parsec"
    migrated = manage("migrate", "--db", url, cwd=tmp_path, DJANGO_SECRET_KEY="k")
    assert migrated.returncode == 0, migrated.stderr
    options = ["--db", url, "-b", "POSTGRESQL", "--administration-token", "t", "--backend-addr", "parsec://h", "--email-host", "MOCKED"]
    with running(*options, cwd=tmp_path, DJANGO_SECRET_KEY="k") as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health/ready", timeout=5) as response:
            checks = json.loads(response.read())["checks"]
    assert checks["database"]["status"] == "ok" and checks["blockstore"]["status"] == "ok"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dev", "--port", "abc"], "Error: --port / PARSEC_PORT: invalid value 'abc': expected an integer"),
        (["--db", "foo://"], "Error: --db / PARSEC_DB: invalid value: expected MOCKED, postgresql://"),
        (["--dev", "-b", "RAID5:0:MOCKED", "-b", "RAID5:1:MOCKED"],
         "Error: --blockstore / PARSEC_BLOCKSTORE: RAID5 blockstore needs at least 3 nodes"),
        (["--dev", "--log-level", "LOUD"], "Error: --log-level / PARSEC_LOG_LEVEL: invalid value 'LOUD'"),
    ],
)
def test_bad_values_stop_the_start(tmp_path: Path, args: list[str], message: str) -> None:
    result = manage("run", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_bad_value_from_the_environment(tmp_path: Path) -> None:
    result = manage("run", "--dev", cwd=tmp_path, PARSEC_CMD_ARGS="--sse-keepalive=$KEEPALIVE", KEEPALIVE="soon")
    assert (result.returncode, result.stderr) == (
        2, "Error: --sse-keepalive / PARSEC_SSE_KEEPALIVE: invalid value 'soon': expected an integer\n"
    )


def test_mocked_database_takes_concurrent_writers(tmp_path: Path) -> None:
    # protocol/db.py runs ORM calls in parallel worker threads and closes connections after each.
    script = textwrap.dedent(
        """
        import asyncio, django
        from concurrent.futures import ThreadPoolExecutor
        django.setup()
        from django.core.management import call_command
        from django.db import transaction
        from django.utils import timezone
        from organizations.models import Organization
        from protocol.db import run_sync

        def create(i):
            with transaction.atomic():
                organization = Organization.objects.create(organization_id=f"Org{i}", created_on=timezone.now())
                Organization.objects.filter(pk=organization.pk).update(is_expired=True)

        async def main():
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(12))
            await asyncio.gather(*(run_sync(create, i) for i in range(100)))
            print(await run_sync(lambda: Organization.objects.filter(is_expired=True).count()))

        call_command("migrate", verbosity=0)
        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=MANAGE_PY.parent, capture_output=True, text=True, timeout=120,
        env=clean_environment(PARSEC_DB="MOCKED", DJANGO_SETTINGS_MODULE="parsec_site.settings"),
    )
    assert (result.returncode, result.stdout) == (0, "100\n"), result.stderr
