"""Blocks: immutable encrypted chunks of file content, attached to a realm.

`Block` is the metadata every blockstore shares; `BlockData` holds the bytes only when the
`POSTGRESQL` blockstore is configured (then in whatever database Django uses).
"""
from __future__ import annotations

from django.db import models

from organizations.models import Device, Organization
from realms.models import Realm


class Block(models.Model):
    """A block whose data is already in the blockstore (the row is written only after the data)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    block_id = models.UUIDField()
    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, related_name="blocks")
    author = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="+")
    size = models.PositiveIntegerField()
    # Server time of the creation (blocks carry no client timestamp).
    created_on = models.DateTimeField()

    class Meta:
        constraints = [
            # Two creators of the same block id: the database lets exactly one in.
            models.UniqueConstraint(fields=["organization", "block_id"], name="block_unique_id"),
        ]

    def __str__(self) -> str:
        return str(self.block_id)


class BlockData(models.Model):
    """The bytes of a block for the `POSTGRESQL` blockstore.

    Deliberately not linked to the other tables (like the reference's `block_data`): a blockstore
    only knows (organization id, block id), and the data is written before any metadata exists.
    """

    organization_id = models.CharField(max_length=32)
    block_id = models.UUIDField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            # A retried write of the same block is ignored (`ON CONFLICT DO NOTHING`).
            models.UniqueConstraint(fields=["organization_id", "block_id"], name="block_data_unique_id"),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.block_id}"
