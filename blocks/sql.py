"""The hand-written statements of the block family: whole statements with named parameters.

Each reads the realm access state (realms.sql.ACCESS_STATE_COLUMNS, the same select list the vlob
statements use) together with what the block command needs, in one round trip, without a lock: the
unique constraint on (organization, block id) decides a race between two writers.
"""
from blocks.models import Block, BlockData
from protocol.db import Prepared
from realms.models import Realm
from realms.sql import ACCESS_STATE_COLUMNS

_BLOCK = Block._meta.db_table
_BLOCK_DATA = BlockData._meta.db_table
_REALM = Realm._meta.db_table

# block_create: reads the access state of the realm `%(realm_id)s` for `%(user_pk)s`, and whether the block
# id `%(block_id)s` is taken in the organization. No lock.
BLOCK_CREATE_STATE = Prepared(
    "block_create_state",
    f"SELECT {ACCESS_STATE_COLUMNS},"
    f' EXISTS(SELECT 1 FROM "{_BLOCK}" b WHERE b."organization_id" = %(organization_pk)s'
    ' AND b."block_id" = %(block_id)s)'
    f' FROM "{_REALM}" r WHERE r."organization_id" = %(organization_pk)s AND r."realm_id" = %(realm_id)s',
)

# block_read: reads the access state of the realm holding the block `%(block_id)s` for `%(user_pk)s`. No lock.
BLOCK_READ_STATE = Prepared(
    "block_read_state",
    f"SELECT {ACCESS_STATE_COLUMNS}"
    f' FROM "{_BLOCK}" b JOIN "{_REALM}" r ON r."id" = b."realm_id"'
    ' WHERE b."organization_id" = %(organization_pk)s AND b."block_id" = %(block_id)s',
)


# --- The POSTGRESQL blockstore on the event loop (blocks.services.*_with_data_on_loop) ---------------

_BLOCK_COLUMNS = {field.name: field.column for field in Block._meta.concrete_fields}


def _block_column(name: str) -> str:
    return f'"{_BLOCK_COLUMNS[name]}"'


# block_create, once the checks passed: the data and the metadata row in one autocommit statement,
# so both are written or neither. A retried write finds its data already there (ON CONFLICT DO
# NOTHING, as the store's own write), and a concurrent creator of the same id is refused by the
# unique constraint on the block row, which undoes this statement's data row with it. Not `Prepared`:
# its values are bound server-side, the block bytes as a binary parameter (protocol.loop_db).
BLOCK_CREATE_WITH_DATA = (
    f'WITH "stored" AS (INSERT INTO "{_BLOCK_DATA}" ("organization_id", "block_id", "data")'
    " VALUES (%(organization_id)s, %(block_id)s, %(data)b) ON CONFLICT DO NOTHING)"
    f' INSERT INTO "{_BLOCK}" ('
    + ", ".join(_block_column(name) for name in ("organization", "block_id", "realm", "author", "size", "created_on"))
    + ") VALUES (%(organization_pk)s, %(block_id)s, %(realm_pk)s, %(author_pk)s, %(size)s, %(created_on)s)"
)

# block_read: BLOCK_READ_STATE's access state of the realm holding the block `%(block_id)s` for
# `%(user_pk)s`, and the block's data (NULL: the store lost it), in one read. No lock.
BLOCK_READ_WITH_DATA = Prepared(
    "block_read_with_data",
    f'SELECT {ACCESS_STATE_COLUMNS}, d."data"'
    f' FROM "{_BLOCK}" b JOIN "{_REALM}" r ON r."id" = b."realm_id"'
    f' LEFT JOIN "{_BLOCK_DATA}" d ON d."organization_id" = %(organization_id)s AND d."block_id" = b."block_id"'
    ' WHERE b."organization_id" = %(organization_pk)s AND b."block_id" = %(block_id)s',
)
