"""The layering of the code, checked by reading every module's imports (issue 12, "the wire knows no domain").

- `protocol/` is the wire, a framework the apps are written against: it imports no app. What it needs from
  them, they register into `protocol.hooks` from their `AppConfig.ready()`.
- `organizations` is below `invites` and `realms` (both build on organizations, users and devices): it imports
  neither.

Every import statement counts, wherever it is: at module level, inside a function (a lazy import is still a
dependency, only a hidden one), and under `if TYPE_CHECKING:` (a type naming an app's class ties the module to
that app just the same; nothing in these layers needs such a type, so no exception is made for them).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("organizations", "invites", "realms", "blocks", "pki", "sequester")


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, relative imports resolved against `module`."""
    found: list[tuple[int, str]] = []
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from x import y` may import the submodule x.y, of the same top package: `x` is what is checked.
            found.append((node.lineno, target))
    return sorted(set(found))


def modules_of(package: str) -> list[tuple[str, Path]]:
    result = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        result.append((".".join(parts), path))
    return result


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for module, path in modules_of(package):
        imports = imported_modules(path.read_text(), module, is_package=path.name == "__init__.py")
        for line, name in imports:
            top = name.split(".")[0]
            if top in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {name}")
    return sorted(set(found))


def test_protocol_imports_no_app() -> None:
    assert modules_of("protocol"), "no module found under protocol/"
    found = violations("protocol", APPS)
    assert not found, "protocol/ (the wire) must not import an app; register through protocol.hooks:\n" + "\n".join(
        found
    )


def test_organizations_imports_neither_invites_nor_realms() -> None:
    assert modules_of("organizations"), "no module found under organizations/"
    found = violations("organizations", ("invites", "realms"))
    assert not found, "organizations must not import invites or realms (they build on it):\n" + "\n".join(found)


def test_the_walk_sees_lazy_type_checking_and_relative_imports() -> None:
    """The checks above are only as good as the walk: it must see the imports that hide."""
    source = '''
from typing import TYPE_CHECKING
import protocol.codec
if TYPE_CHECKING:
    from realms.models import Realm
def f():
    import invites.conduit
    from ..organizations import handshake
from . import hooks
'''
    found = imported_modules(source, "protocol.consumer", is_package=False)
    assert (5, "realms.models") in found
    assert (7, "invites.conduit") in found
    assert (8, "organizations") in found
    assert (9, "protocol") in found
    assert (3, "protocol.codec") in found


# The whole graph between the project's top-level packages, as docs/architecture.md draws it. A new edge is a
# design decision: add it here and to the document, with its reason, or register through a hook instead.
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "protocol": {"parsec_site"},  # parsec_site.metrics / lifecycle only: site services that import no app
    "organizations": {"protocol", "parsec_site"},
    "invites": {"organizations", "protocol"},
    "pki": {"organizations", "protocol"},
    # vlob writes check and store sequester blobs; the realm admin shows block sizes
    "realms": {"organizations", "protocol", "sequester", "blocks"},
    "blocks": {"organizations", "protocol", "realms"},  # the realm access rules decide block access
    "sequester": {"organizations", "protocol", "realms", "blocks"},  # its rows hang on vlob atoms; export reads blocks
    "server": {"organizations", "invites", "realms", "blocks", "pki", "sequester", "protocol", "parsec_site"},
    # settings parse the blockstore grammar; URLs mount the administration API, the console and the HTTP routes
    "parsec_site": {"protocol", "organizations", "blocks", "server"},
}


def test_packages_import_only_what_the_architecture_allows() -> None:
    packages = set(ALLOWED_IMPORTS)
    found = []
    for package, allowed in ALLOWED_IMPORTS.items():
        for line in violations(package, tuple(packages - allowed - {package})):
            found.append(line)
    assert not found, "imports outside docs/architecture.md's graph:\n" + "\n".join(found)
