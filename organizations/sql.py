"""The hand-written statements of the organizations app: whole statements with named parameters.

Both PostgreSQL and SQLite run them (recursive CTEs, no LATERAL).
"""
from organizations.models import Device, User

_USER = User._meta.db_table
_DEVICE = Device._meta.db_table

# user_get's trustchain: reads the pks of the devices that certified (or revoked) the user `%(user_pk)s`, its
# devices, and, transitively, those devices' owners and certifiers — only the closure, however large the
# organization (certifiers are older than what they certify, so the walk ends at the root key's NULL). No lock.
TRUSTCHAIN_DEVICES = f"""
WITH RECURSIVE chain(device_pk) AS (
    SELECT CASE k.n WHEN 1 THEN u."user_certifier_id" ELSE u."revoked_user_certifier_id" END
    FROM "{_USER}" u CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) k
    WHERE u."id" = %(user_pk)s
    UNION
    SELECT d."device_certifier_id" FROM "{_DEVICE}" d WHERE d."user_id" = %(user_pk)s
    UNION
    SELECT CASE k.n
        WHEN 1 THEN d."device_certifier_id" WHEN 2 THEN u."user_certifier_id" ELSE u."revoked_user_certifier_id" END
    FROM chain c
    JOIN "{_DEVICE}" d ON d."id" = c.device_pk
    JOIN "{_USER}" u ON u."id" = d."user_id"
    CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) k
)
SELECT c.device_pk, d."user_id" FROM chain c JOIN "{_DEVICE}" d ON d."id" = c.device_pk
"""
