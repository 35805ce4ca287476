"""The hand-written statements of the block family: whole statements with named parameters.

Each reads the realm access state (realms.sql.ACCESS_STATE_COLUMNS, the same select list the vlob
statements use) together with what the block command needs, in one round trip, without a lock: the
unique constraint on (organization, block id) decides a race between two writers.
"""
from blocks.models import Block
from protocol.db import Prepared
from realms.models import Realm
from realms.sql import ACCESS_STATE_COLUMNS

_BLOCK = Block._meta.db_table
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
