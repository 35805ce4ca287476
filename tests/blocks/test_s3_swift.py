"""S3 (boto3, against moto's S3 server) and Swift (python-swiftclient, against a one-node Swift) stores."""
from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from blocks.stores.base import BlockNotFound, BlockStoreError, check_blockstore
from blocks.stores.factory import get_blockstore, prepare_blockstore, single_blockstore_from_config
from blocks.stores.s3 import S3BlockStore
from blocks.stores.swift import SwiftBlockStore
from tests.conftest import World, connect_as, create_realm
from tests.objectstores import MotoServer, SwiftCluster

ORG = "CoolOrg"


@pytest.fixture(params=["s3", "swift"])
def object_store(request: pytest.FixtureRequest):
    """(store, list of the object names in its bucket / container)."""
    if request.param == "s3":
        server: MotoServer = request.getfixturevalue("s3_servers")[0]
        bucket = server.new_bucket()
        store = single_blockstore_from_config(server.blockstore(bucket))
        assert isinstance(store, S3BlockStore)

        def names() -> list[str]:
            return sorted(item["Key"] for item in server.client().list_objects_v2(Bucket=bucket).get("Contents", []))

        return store, names
    spec = request.getfixturevalue("swift_store")
    cluster: SwiftCluster = request.getfixturevalue("swift_cluster")
    store = single_blockstore_from_config(spec)
    assert isinstance(store, SwiftBlockStore)

    def names() -> list[str]:
        return sorted(item["name"] for item in cluster.connection().get_container(store.container)[1])

    return store, names


# --- What every object store does --------------------------------------------------------------------


def test_round_trip_and_object_name(object_store) -> None:
    store, names = object_store
    block_id = uuid.uuid4()
    store.check()
    store.create(ORG, block_id, b"data")
    assert store.read(ORG, block_id) == b"data"
    # Like the reference: `<organization_id>/<block uuid with dashes>`.
    assert names() == [f"{ORG}/{block_id}"]


def test_delete_then_delete_again(object_store) -> None:
    store, names = object_store
    block_id, kept_id = uuid.uuid4(), uuid.uuid4()
    store.create(ORG, block_id, b"data")
    store.create(ORG, kept_id, b"kept")
    store.create("CoolOrg2", block_id, b"an organization id that starts the same")
    assert store.list_blocks(ORG) == {block_id, kept_id}
    store.delete(ORG, block_id)
    assert store.list_blocks(ORG) == {kept_id}
    assert names() == sorted([f"CoolOrg2/{block_id}", f"{ORG}/{kept_id}"])
    with pytest.raises(BlockNotFound):
        store.read(ORG, block_id)
    # Already gone (an interrupted erase run again): not an error.
    store.delete(ORG, block_id)
    assert store.read(ORG, kept_id) == b"kept"


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024])
def test_sizes(object_store, size: int) -> None:
    store, _ = object_store
    block_id = uuid.uuid4()
    data = os.urandom(size)
    store.create(ORG, block_id, data)
    assert store.read(ORG, block_id) == data


def test_create_again_overwrites_silently(object_store) -> None:
    store, names = object_store
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    store.create(ORG, block_id, b"data")
    assert store.read(ORG, block_id) == b"data"
    assert len(names()) == 1


def test_missing_block_is_not_found(object_store) -> None:
    store, _ = object_store
    with pytest.raises(BlockNotFound):
        store.read(ORG, uuid.uuid4())


def test_organizations_are_separate(object_store) -> None:
    store, _ = object_store
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"cool")
    store.create("OtherOrg", block_id, b"other")
    assert store.read(ORG, block_id) == b"cool"
    assert store.read("OtherOrg", block_id) == b"other"


def test_concurrent_threads_share_the_store(object_store) -> None:
    store, names = object_store
    ids = [[uuid.uuid4() for _ in range(4)] for _ in range(12)]
    errors: list[BaseException] = []

    def work(block_ids: list[uuid.UUID]) -> None:
        try:
            for block_id in block_ids:
                store.create(ORG, block_id, block_id.bytes)
            for block_id in block_ids:
                assert store.read(ORG, block_id) == block_id.bytes
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(block_ids,)) for block_ids in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(names()) == 48


# --- S3 specifics ----------------------------------------------------------------------------------


def test_s3_client_configuration(s3_servers) -> None:
    server = s3_servers[0]
    store = single_blockstore_from_config(server.blockstore("any-bucket"))
    assert isinstance(store, S3BlockStore)
    config = store.client.meta.config
    assert store.client.meta.endpoint_url == server.endpoint_url
    assert store.client.meta.region_name == "us-east-1"
    assert config.s3 == {"addressing_style": "path"}  # S3-compatible services: path-style
    assert config.max_pool_connections >= 10
    assert (config.connect_timeout, config.read_timeout) == (5.0, 30.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    # No aws-chunked checksum trailers for S3-compatible services (many refuse them).
    assert (config.request_checksum_calculation, config.response_checksum_validation) == ("when_required",) * 2
    # AWS itself (empty endpoint): virtual-hosted addressing, boto3's default endpoint.
    aws = single_blockstore_from_config("s3::eu-west-3:bucket:key:secret")
    assert aws.client.meta.config.s3 == {"addressing_style": "auto"}  # type: ignore[attr-defined]
    assert aws.client.meta.endpoint_url == "https://s3.eu-west-3.amazonaws.com"  # type: ignore[attr-defined]
    assert aws.client.meta.config.request_checksum_calculation == "when_supported"  # type: ignore[attr-defined]


def test_s3_pool_follows_the_server_concurrency(s3_servers, parsec_settings) -> None:
    parsec_settings(db_max_connections=40)
    store = single_blockstore_from_config(s3_servers[0].blockstore("any-bucket"))
    assert store.client.meta.config.max_pool_connections == 44  # type: ignore[attr-defined]


def test_s3_missing_bucket_fails_the_check(s3_servers) -> None:
    store = single_blockstore_from_config(s3_servers[0].blockstore("no-such-bucket"))
    with pytest.raises(BlockStoreError, match=r"^S3 bucket `no-such-bucket` at http://127.0.0.1:[0-9]+: HTTP 404: "
                                               r"Not Found \(no such bucket\)$"):
        check_blockstore(store)


def test_start_up_check_names_the_bad_node(s3_servers, swift_cluster: SwiftCluster, parsec_settings) -> None:
    bucket = s3_servers[0].new_bucket()
    s3_servers[2].new_bucket(bucket)
    container = swift_cluster.new_container()
    good = (f"RAID5:0:{s3_servers[0].blockstore(bucket)}", f"RAID5:2:{s3_servers[2].blockstore(bucket)}")
    parsec_settings(blockstore=(*good, f"RAID5:1:{swift_cluster.blockstore(container)}"))
    store = prepare_blockstore()
    assert store is get_blockstore()
    parsec_settings(blockstore=(*good, f"RAID5:1:{s3_servers[1].blockstore(bucket)}"))  # no such bucket there
    with pytest.raises(BlockStoreError) as caught:
        prepare_blockstore()
    assert str(caught.value) == (
        f"RAID5 node 1: S3 bucket `{bucket}` at {s3_servers[1].endpoint_url}: HTTP 404: Not Found (no such bucket)"
    )


def test_s3_server_down_is_a_store_error_not_a_missing_block(s3_servers) -> None:
    server = s3_servers[1]
    store = single_blockstore_from_config(server.blockstore(server.new_bucket()))
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    server.stop()
    started = time.monotonic()
    for call in (
        lambda: store.read(ORG, block_id), lambda: store.create(ORG, uuid.uuid4(), b"x"),
        lambda: store.delete(ORG, block_id), lambda: store.list_blocks(ORG), store.check,
    ):
        with pytest.raises(BlockStoreError) as caught:
            call()
        assert not isinstance(caught.value, BlockNotFound)
        assert "EndpointConnectionError" in str(caught.value)
    # Bounded retries: seconds, not minutes (3 attempts, jittered backoff of at most 1 + 2 s).
    assert time.monotonic() - started < 15


# --- Swift specifics -------------------------------------------------------------------------------


def test_swift_logs_in_as_user_colon_tenant(swift_cluster: SwiftCluster) -> None:
    container = swift_cluster.new_container()
    store = single_blockstore_from_config(swift_cluster.blockstore(container))
    assert isinstance(store, SwiftBlockStore)
    connection = store._new_connection()
    assert (connection.authurl, connection.user, connection.key) == (swift_cluster.auth_url, "test:tester", "testing")
    assert connection.retries == 2 and connection.timeout == 30.0
    wrong = single_blockstore_from_config(swift_cluster.blockstore(container).replace(":testing", ":wrong"))
    with pytest.raises(BlockStoreError, match="401"):
        check_blockstore(wrong)


def test_swift_missing_container_fails_the_check(swift_cluster: SwiftCluster) -> None:
    store = single_blockstore_from_config(swift_cluster.blockstore("no-such-container"))
    with pytest.raises(BlockStoreError, match=r"Swift container `no-such-container` at .*: HTTP 404"):
        check_blockstore(store)


def test_swift_down_then_back(swift_cluster: SwiftCluster, swift_store: str) -> None:
    store = single_blockstore_from_config(swift_store)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"kept on disk")
    swift_cluster.stop()
    try:
        started = time.monotonic()
        with pytest.raises(BlockStoreError) as caught:
            store.read(ORG, block_id)
        assert not isinstance(caught.value, BlockNotFound)
        with pytest.raises(BlockStoreError):
            store.create(ORG, uuid.uuid4(), b"x")
        with pytest.raises(BlockStoreError, match="cannot delete block"):
            store.delete(ORG, block_id)
        with pytest.raises(BlockStoreError, match="cannot list the blocks of CoolOrg"):
            store.list_blocks(ORG)
        assert time.monotonic() - started < 15  # 2 retries, 0.2 + 0.4 s of backoff each, per call
    finally:
        swift_cluster.start()
    # New memcached, so new tokens: the pooled connections log in again by themselves.
    assert store.read(ORG, block_id) == b"kept on disk"


# --- Through the protocol --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["s3", "swift"])
async def test_block_commands_on_object_stores(world: World, parsec_settings, request, kind: str) -> None:
    if kind == "s3":
        server = request.getfixturevalue("s3_servers")[0]
        spec = server.blockstore(server.new_bucket())
    else:
        spec = request.getfixturevalue("swift_store")
    parsec_settings(blockstore=(spec,))
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    block_id = uuid.uuid4()
    data = os.urandom(512 * 1024)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == {"status": "ok"}
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    assert single_blockstore_from_config(spec).read(world.organization_id, block_id) == data
