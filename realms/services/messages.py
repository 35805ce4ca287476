"""Messages between users (docs/protocol.md#messages): sent along a role change or a maintenance start,
read with `message_get`."""
from __future__ import annotations

from datetime import datetime

from organizations.models import User
from protocol.events import emit_user_event_on_commit
from protocol.session import AuthenticatedSession
from realms import selectors
from realms.models import Message
from realms.outcomes import MessagesOk


def send_messages(*, sender_device_pk: int, timestamp: datetime, bodies: dict[int, bytes]) -> None:
    """Append one message per recipient user (pk -> body), in the given order; events after commit."""
    # Lock the recipients (in pk order, against deadlocks): two senders must not take the same index.
    recipients = User.objects.select_for_update(no_key=True).filter(pk__in=bodies).order_by("pk")
    list(recipients.values_list("pk", flat=True))
    for recipient_pk, body in bodies.items():
        index = Message.objects.filter(recipient_id=recipient_pk).count() + 1
        Message.objects.create(
            recipient_id=recipient_pk, index=index, sender_id=sender_device_pk, timestamp=timestamp, body=body
        )
        emit_user_event_on_commit(user_pk=recipient_pk, event={"event": "message.received", "index": index})


def message_get(*, session: AuthenticatedSession, offset: int) -> MessagesOk:
    # Indexes are dense from 1, so the rank of a message is its index.
    return MessagesOk(
        messages=[
            {"count": index, "sender": sender, "timestamp": timestamp, "body": bytes(body)}
            for index, sender, timestamp, body in selectors.messages_after(user_pk=session.user_pk, offset=offset)
        ]
    )
