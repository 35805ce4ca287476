"""The organization bootstrap webhook (docs/protocol.md#bootstrap-webhook): POSTed after commit, failures logged."""
from __future__ import annotations

import dataclasses
import json
import logging
import urllib.error
import urllib.request

from organizations.outcomes import BootstrapWebhookPayload

logger = logging.getLogger("parsec.organizations")

WEBHOOK_TIMEOUT_SECONDS = 30


def post_bootstrap_webhook(url: str, payload: BootstrapWebhookPayload) -> None:
    body = json.dumps(dataclasses.asdict(payload)).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        logger.warning("Organization bootstrap webhook answered HTTP %s (organization %s)", exc.code, payload.organization_id)
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.warning("Organization bootstrap webhook failed: %s (organization %s)", exc, payload.organization_id)
        return
    if not 200 <= status < 300:
        logger.warning("Organization bootstrap webhook answered HTTP %s (organization %s)", status, payload.organization_id)
