"""Protocol handlers of the user family (user_get, user_create, user_revoke, device_create, human_find)."""
