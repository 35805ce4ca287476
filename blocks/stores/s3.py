"""`s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>` (docs/configuration.md#blockstore), with boto3.

boto3 directly rather than django-storages' S3Storage: a block is written once and read whole, by
key, as bytes. S3Storage is a file-storage API (names made unique or overwritten, File objects,
multipart transfers through s3transfer, a client configured from Django settings, one per storage)
and hides the error we must tell apart: "no such key" (`BlockNotFound`) from "S3 is unreachable"
(`BlockStoreError`). put_object / get_object are all a block command needs (erasing
an organization adds delete_object and list_objects_v2).

One client per store, shared by every worker thread (botocore clients are thread-safe), with an
HTTP connection pool sized for the server's concurrency, explicit timeouts and a bounded number of
retries, so that a dead node fails in seconds instead of minutes (a RAID store then works around it).
"""
from __future__ import annotations

import uuid

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from blocks.stores.base import BlockNotFound, BlockStoreError, block_ids_of, object_name, store_concurrency
from blocks.stores.config import S3Blockstore

CONNECT_TIMEOUT = 5.0  # seconds to open a connection
READ_TIMEOUT = 30.0  # seconds without a byte from the server (a block is at most a few MiB)
MAX_ATTEMPTS = 3  # per call, first attempt included ("standard" retry mode: exponential backoff with jitter)

_NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code, message = str(error.get("Code", "error")), error.get("Message")
        text = f"HTTP {status}" if code == str(status) else f"{code} (HTTP {status})"  # HEAD answers carry no body
        return f"{text}: {message}" if message else text
    return f"{type(exc).__name__}: {exc}"


class S3BlockStore:
    """One bucket of an S3-compatible service; object key `<organization_id>/<block uuid with dashes>`."""

    def __init__(
        self,
        config: S3Blockstore,
        *,
        max_pool_connections: int | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.config = config
        self.bucket = config.bucket
        self.endpoint = config.endpoint_url or "AWS"
        client_config = Config(
            # S3-compatible services (MinIO, Ceph, moto...) are addressed by path: their bucket names are
            # rarely DNS names under the endpoint. AWS itself ("auto") gets virtual-hosted addressing.
            s3={"addressing_style": "path" if config.endpoint_url else "auto"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections or store_concurrency(),
            # botocore >= 1.36 adds CRC checksums to every upload, over HTTPS as an aws-chunked trailer,
            # which many S3-compatible services (older MinIO, Ceph RGW...) refuse. Only AWS gets them.
            request_checksum_calculation="when_supported" if not config.endpoint_url else "when_required",
            response_checksum_validation="when_supported" if not config.endpoint_url else "when_required",
        )
        # A session of its own: boto3's default session is not safe to share while clients are created.
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region or None,
            aws_access_key_id=config.key,
            aws_secret_access_key=config.secret,
            config=client_config,
        )

    def __repr__(self) -> str:
        return f"S3BlockStore({self.endpoint} bucket={self.bucket})"

    def check(self) -> None:
        """HEAD the bucket (start-up check, like the reference); BlockStoreError if it cannot be used."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(exc, ClientError) \
                else None
            hint: dict[int | None, str] = {404: " (no such bucket)", 403: " (access denied: check the key, the secret and the region)"}
            raise BlockStoreError(
                f"S3 bucket `{self.bucket}` at {self.endpoint}: {_describe(exc)}{hint.get(status, '')}"
            ) from exc

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=object_name(organization_id, block_id), Body=data)
        except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise BlockStoreError(f"S3 {self.endpoint}: cannot write block {block_id}: {_describe(exc)}") from exc

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_name(organization_id, block_id))
            with response["Body"] as body:
                return body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
                raise BlockNotFound(f"S3 {self.endpoint}: block {block_id} not found") from exc
            raise BlockStoreError(f"S3 {self.endpoint}: cannot read block {block_id}: {_describe(exc)}") from exc
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise BlockStoreError(f"S3 {self.endpoint}: cannot read block {block_id}: {_describe(exc)}") from exc

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        # S3 answers 204 whether or not the key existed: deleting twice is not an error.
        try:
            self.client.delete_object(Bucket=self.bucket, Key=object_name(organization_id, block_id))
        except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise BlockStoreError(f"S3 {self.endpoint}: cannot delete block {block_id}: {_describe(exc)}") from exc

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        prefix = f"{organization_id}/"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise BlockStoreError(
                f"S3 {self.endpoint}: cannot list the blocks of {organization_id}: {_describe(exc)}"
            ) from exc
        return block_ids_of(key[len(prefix):] for key in keys)
