"""human_find's first page without a scan of the organization (issue 15, flat with size).

* `user_find_order_idx` serves the page's ORDER BY; `user_revoked_on_idx` (partial) finds the revocations
  dated ahead of now.
* `OrganizationUserCounts` holds each organization's user counts, kept by triggers on the user table, on
  PostgreSQL and SQLite alike: every insert, delete, and update of the counted columns (organization,
  e-mail, revocation date) takes the old row's contribution out and puts the new row's in. Whoever writes
  users (the services, the bench's bulk loader and its COPY, tests' factories, the erase), the counts stay
  exact, and the check constraint refuses any that would not be.
* The counts of the organizations already there are computed once, here.
"""

import django.db.models.deletion
import django.db.models.functions.text
from django.db import migrations, models

# Per row: +1/-1 on each count the row falls in. `{row}` is NEW or OLD.
_CONTRIBUTION = {
    "users": "1",
    "human_users": "CASE WHEN {row}.human_email IS NOT NULL THEN 1 ELSE 0 END",
    "revoked_users": "CASE WHEN {row}.revoked_on IS NOT NULL THEN 1 ELSE 0 END",
    "revoked_human_users": "CASE WHEN {row}.revoked_on IS NOT NULL AND {row}.human_email IS NOT NULL THEN 1 ELSE 0 END",
}
_TRIGGERS = ("user_counts_insert", "user_counts_update", "user_counts_delete")


def _tables(apps):
    return apps.get_model("organizations", "User")._meta.db_table, apps.get_model(
        "organizations", "OrganizationUserCounts"
    )._meta.db_table


def _add(counts: str, row: str, sign: str) -> str:
    """The statements adding (sign "+") or taking out ("-") the row's contribution to its organization's counts."""
    settings = ", ".join(f"{name} = {name} {sign} {value.format(row=row)}" for name, value in _CONTRIBUTION.items())
    update = f"UPDATE {counts} SET {settings} WHERE organization_id = {row}.organization_id;"
    if sign == "-":
        return update
    # The organization's first user makes its row (an organization without users has none: counts of 0).
    insert = (
        f"INSERT INTO {counts} (organization_id, {', '.join(_CONTRIBUTION)}) "
        f"VALUES ({row}.organization_id, 0, 0, 0, 0) ON CONFLICT (organization_id) DO NOTHING;"
    )
    return insert + "\n" + update


def create_triggers(apps, schema_editor) -> None:
    users, counts = _tables(apps)
    connection = schema_editor.connection
    counted_columns = "organization_id, human_email, revoked_on"
    if connection.vendor == "postgresql":
        statements = [
            f"""CREATE FUNCTION {counts}_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        {_add(counts, "OLD", "-")}
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {_add(counts, "NEW", "+")}
    END IF;
    RETURN NULL;
END $$""",
            f"CREATE TRIGGER user_counts_insert AFTER INSERT ON {users} FOR EACH ROW EXECUTE FUNCTION {counts}_keep()",
            f"CREATE TRIGGER user_counts_update AFTER UPDATE OF {counted_columns} ON {users} FOR EACH ROW "
            f"EXECUTE FUNCTION {counts}_keep()",
            f"CREATE TRIGGER user_counts_delete AFTER DELETE ON {users} FOR EACH ROW EXECUTE FUNCTION {counts}_keep()",
        ]
    elif connection.vendor == "sqlite":
        statements = [
            f"CREATE TRIGGER user_counts_insert AFTER INSERT ON {users} BEGIN {_add(counts, 'NEW', '+')} END",
            f"CREATE TRIGGER user_counts_update AFTER UPDATE OF {counted_columns} ON {users} BEGIN "
            f"{_add(counts, 'OLD', '-')} {_add(counts, 'NEW', '+')} END",
            f"CREATE TRIGGER user_counts_delete AFTER DELETE ON {users} BEGIN {_add(counts, 'OLD', '-')} END",
        ]
    else:
        raise NotImplementedError(f"user count triggers for {connection.vendor}")
    sums = ", ".join(f"SUM({value.format(row=users)})" for value in _CONTRIBUTION.values())
    statements.append(
        f"INSERT INTO {counts} (organization_id, {', '.join(_CONTRIBUTION)}) "
        f"SELECT organization_id, {sums} FROM {users} GROUP BY organization_id"
    )
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def drop_triggers(apps, schema_editor) -> None:
    users, counts = _tables(apps)
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for name in _TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {users}" if connection.vendor == "postgresql" else ""))
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP FUNCTION IF EXISTS {counts}_keep()")


class Migration(migrations.Migration):

    dependencies = [
        ('organizations', '0003_user_search_trigram_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='OrganizationUserCounts',
            fields=[
                ('organization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='user_counts', serialize=False, to='organizations.organization')),
                ('users', models.PositiveBigIntegerField(default=0)),
                ('human_users', models.PositiveBigIntegerField(default=0)),
                ('revoked_users', models.PositiveBigIntegerField(default=0)),
                ('revoked_human_users', models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name='user',
            index=models.Index(models.F('organization'), django.db.models.functions.text.Lower('human_label'), models.F('user_id'), models.F('id'), name='user_find_order_idx'),
        ),
        migrations.AddIndex(
            model_name='user',
            index=models.Index(condition=models.Q(('revoked_on__isnull', False)), fields=['organization', 'revoked_on'], name='user_revoked_on_idx'),
        ),
        migrations.AddConstraint(
            model_name='organizationusercounts',
            constraint=models.CheckConstraint(condition=models.Q(('human_users__lte', models.F('users')), ('revoked_users__lte', models.F('users')), ('revoked_human_users__lte', models.F('human_users')), ('revoked_human_users__lte', models.F('revoked_users'))), name='user_counts_consistent'),
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
