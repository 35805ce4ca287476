"""Regenerate `wire_requests.json` from the wire schemas (JSON5):

    python -m tests.fuzz.extract_schemas /path/to/protocol/schema

The fuzzer needs the request side of every command of the three families, as the API 3 flavour
defines it (the one 2.17 clients speak): field names and type expressions, and the nested types
those fields name. This keeps only those facts, as plain JSON, so the suite runs on a fresh clone.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

FAMILIES = {"anonymous_cmds": "anonymous", "invited_cmds": "invited", "authenticated_cmds": "authenticated"}
OUTPUT = Path(__file__).with_name("wire_requests.json")
_TYPE_NAMES = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _load_json5(path: Path) -> Any:
    # The schemas are JSON plus whole-line `//` comments.
    return json.loads(re.sub(r"^\s*//.*$", "", path.read_text(), flags=re.M))


def _referenced(type_expression: str) -> set[str]:
    return set(_TYPE_NAMES.findall(type_expression))


def _request_of(flavour: dict[str, Any]) -> dict[str, Any]:
    nested = {item["name"]: item for item in flavour.get("nested_types", [])}
    request = flavour["req"]
    pending = {request["unit"]} if "unit" in request else set()
    for field in request.get("fields", []):
        pending |= _referenced(field["type"])
    kept: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in kept or name not in nested:
            continue
        kept[name] = nested[name]
        for field in nested[name].get("fields", []) or []:
            pending |= _referenced(field["type"])
        for variant in nested[name].get("variants", []) or []:
            for field in variant.get("fields", []) or []:
                pending |= _referenced(field["type"])
    entry: dict[str, Any] = {"fields": request.get("fields", [])}
    if "unit" in request:
        entry["unit"] = request["unit"]
    if "introduced_in" in flavour:
        entry["introduced_in"] = flavour["introduced_in"]
    entry["nested_types"] = [kept[name] for name in sorted(kept)]
    return entry


def extract(schema_dir: Path) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for folder, family in FAMILIES.items():
        commands: dict[str, Any] = {}
        for path in sorted((schema_dir / "protocol" / folder).glob("*.json5")):
            flavours = [flavour for flavour in _load_json5(path) if 3 in flavour["major_versions"]]
            if flavours:
                commands[flavours[0]["req"]["cmd"]] = _request_of(flavours[0])
        result[family] = commands
    return result


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(extract(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT}")
