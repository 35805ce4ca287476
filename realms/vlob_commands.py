"""Protocol handlers of the vlob family (vlob_create, vlob_read, ...): decode, call the service, encode."""
