#!/usr/bin/env python
"""Django's command-line utility for parsec-django."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsec_site.settings")
    from parsec_site.cli import prepare_environment

    # `run` options (flags, PARSEC_CMD_ARGS, --dev) become PARSEC_* variables before
    # Django reads its settings, so settings.py stays the only place reading them.
    prepare_environment(sys.argv)

    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
