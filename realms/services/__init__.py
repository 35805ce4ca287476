"""The realm-family services, one module per topic: realms (creation, roles, archiving), maintenance,
vlobs, messages. Each returns an outcome of realms/outcomes.py."""
