"""`swift:<auth_url>:<tenant>:<container>:<user>:<password>` (docs/configuration.md#blockstore), with
python-swiftclient.

python-swiftclient directly rather than django-storage-swift: the latter is a Django file storage
(unique names, File objects, settings-wide credentials) over the same swiftclient, and it turns a
missing object and an unreachable Swift into the same failure. A block command needs two calls,
put_object and get_object (erasing an organization adds delete_object and a listing), and the
difference between "not found" (`BlockNotFound`) and "down" (`BlockStoreError`).

Like the reference: auth v1 as user `<user>:<tenant>` with key `<password>`, object name
`<organization_id>/<block uuid with dashes>`, container HEADed at start-up. Unlike it: explicit
timeout and a short retry schedule (the reference keeps swiftclient's 5 retries and 1+2+4+8+16 s of
backoff: 31 s before a dead Swift fails), and a pool of connections, because a swiftclient
`Connection` holds one HTTP session and must not be used by two threads at once.
"""
from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import uuid
from collections.abc import Iterator

import requests
import swiftclient
from swiftclient.exceptions import ClientException

from blocks.stores.base import BlockNotFound, BlockStoreError, block_ids_of, object_name, store_concurrency
from blocks.stores.config import SwiftBlockstore

TIMEOUT = 30.0  # seconds, connect and read (passed to requests)
RETRIES = 2  # retries after the first attempt
STARTING_BACKOFF = 0.2  # seconds, doubled at each retry
MAX_BACKOFF = 2.0

# swiftclient logs every failed request at INFO, as a curl command line plus the response; the
# failures that matter are reported by the blocks services and blockstore_check instead.
logging.getLogger("swiftclient").setLevel(logging.WARNING)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientException):
        return f"HTTP {exc.http_status} {exc.http_reason or ''}".strip() if exc.http_status else str(exc)
    return f"{type(exc).__name__}: {exc}"


class SwiftBlockStore:
    """One container of an OpenStack Swift cluster."""

    def __init__(
        self,
        config: SwiftBlockstore,
        *,
        pool_size: int | None = None,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        starting_backoff: float = STARTING_BACKOFF,
    ) -> None:
        self.config = config
        self.container = config.container
        self.endpoint = config.auth_url
        self._timeout = timeout
        self._retries = retries
        self._starting_backoff = starting_backoff
        self._idle: queue.LifoQueue[swiftclient.Connection] = queue.LifoQueue()
        # At most `pool_size` connections exist: more threads wait for one to be given back.
        self._slots = threading.BoundedSemaphore(pool_size or store_concurrency())

    def __repr__(self) -> str:
        return f"SwiftBlockStore({self.endpoint} container={self.container})"

    def _new_connection(self) -> swiftclient.Connection:
        return swiftclient.Connection(
            authurl=self.config.auth_url,
            user=f"{self.config.user}:{self.config.tenant}",
            key=self.config.password,
            retries=self._retries,
            starting_backoff=self._starting_backoff,
            max_backoff=MAX_BACKOFF,
            timeout=self._timeout,
        )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[swiftclient.Connection]:
        with self._slots:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = self._new_connection()  # authenticates on its first request
            healthy = False
            try:
                yield connection
                healthy = True
            except ClientException as exc:
                # An HTTP answer (404...) leaves the connection usable.
                healthy = exc.http_status is not None
                raise
            finally:
                if healthy:
                    self._idle.put(connection)
                else:
                    connection.close()

    def check(self) -> None:
        """HEAD the container (start-up check, like the reference); BlockStoreError if it cannot be used."""
        try:
            with self._connection() as connection:
                connection.head_container(self.container)
        except (ClientException, requests.exceptions.RequestException, OSError) as exc:
            raise BlockStoreError(f"Swift container `{self.container}` at {self.endpoint}: {_describe(exc)}") from exc

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        try:
            with self._connection() as connection:
                # A seekable body: swiftclient can then retry the upload (with bytes it cannot).
                connection.put_object(
                    self.container, object_name(organization_id, block_id), io.BytesIO(data), content_length=len(data)
                )
        except (ClientException, requests.exceptions.RequestException, OSError) as exc:
            raise BlockStoreError(f"Swift {self.endpoint}: cannot write block {block_id}: {_describe(exc)}") from exc

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        try:
            with self._connection() as connection:
                _, data = connection.get_object(self.container, object_name(organization_id, block_id))
            return data
        except ClientException as exc:
            if exc.http_status == 404:
                raise BlockNotFound(f"Swift {self.endpoint}: block {block_id} not found") from exc
            raise BlockStoreError(f"Swift {self.endpoint}: cannot read block {block_id}: {_describe(exc)}") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise BlockStoreError(f"Swift {self.endpoint}: cannot read block {block_id}: {_describe(exc)}") from exc

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        try:
            with self._connection() as connection:
                connection.delete_object(self.container, object_name(organization_id, block_id))
        except ClientException as exc:
            if exc.http_status == 404:
                return  # already gone: an interrupted erase is being re-run
            raise BlockStoreError(f"Swift {self.endpoint}: cannot delete block {block_id}: {_describe(exc)}") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise BlockStoreError(f"Swift {self.endpoint}: cannot delete block {block_id}: {_describe(exc)}") from exc

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        prefix = f"{organization_id}/"
        try:
            with self._connection() as connection:
                _, objects = connection.get_container(self.container, prefix=prefix, full_listing=True)
        except (ClientException, requests.exceptions.RequestException, OSError) as exc:
            raise BlockStoreError(
                f"Swift {self.endpoint}: cannot list the blocks of {organization_id}: {_describe(exc)}"
            ) from exc
        return block_ids_of(item["name"][len(prefix):] for item in objects)
