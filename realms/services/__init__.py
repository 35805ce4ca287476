"""The realm-family services, one module per topic: realms (creation, roles, archiving), maintenance,
vlobs, messages. Each returns an outcome of realms/outcomes.py."""
from realms.selectors import user_current_realm_ids
from realms.services.realms import realm_data_stats

# Imported by name from `realms.services` outside the app (event routing, organization statistics).
__all__ = ["realm_data_stats", "user_current_realm_ids"]
