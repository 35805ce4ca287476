"""The site-level app: what spans every app of the server.

The apps form layers, each importing only those below it: `protocol` (the wire, no domain), then
`organizations`, then the apps built on it (`invites`, `realms`, `blocks`, `pki`, `sequester`), and on top
this one. Two ways keep `organizations` from importing the apps above it:

- an answer of `organizations` that needs their rows (the organization stats' realm, vlob and block
  figures, `organization_config`'s sequester services) asks through `organizations.hooks`, which the app
  owning those rows fills from its `AppConfig.ready()`;
- what is cross-app by nature lives here: the `run` command and the site-wide management commands
  (`server_stats`, `erase_organization`), the erase of an organization (`erase.py`, every app's tables),
  the console's statistics page (`console.py`: monthly users and stored blocks) and the organization admin
  with every app's figures (`admin.py`, `admin_erase.py`).

It has no models. Listed last in INSTALLED_APPS: its admin replaces the organizations app's registration.
"""
from django.apps import AppConfig


class ServerConfig(AppConfig):
    name = "server"
    verbose_name = "Server"
