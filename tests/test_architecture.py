"""The floor plan (docs/architecture.md) as rules a reader can check, enforced on the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("manyi", "device", "collector", "analytics", "demo")
MAX_ANALYTICS_LINES = 500
# SQL statements as they appear in string literals (upper-case keywords, as this code base writes them).
SQL = re.compile(r"\b(SELECT\b[\s\S]*\bFROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX|"
                 r"TRIGGER|UNIQUE INDEX)|ALTER TABLE|PRAGMA \w)")
SQL_HOMES = ("analytics/center/", "collector/stores/", "device/outbox.py")


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (function-level imports too), absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)   # `from analytics import web`
    return found


def offending(paths, banned) -> dict[str, list[str]]:
    out = {}
    for path in paths:
        bad = sorted(name for name in imports(path) if any(name == b or name.startswith(b + ".") for b in banned))
        if bad:
            out[rel(path)] = bad
    return out


def test_manyi_imports_no_other_top_level_package():
    assert offending(modules("manyi"), ("device", "collector", "analytics", "demo", "bench")) == {}
    # nor by name (importlib): the parts' commands are found through entry points (setup.cfg)
    by_name = re.compile(r"^(device|collector|analytics|demo)(\.\w+)+$")
    named = {rel(p): [n.value for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                      if isinstance(n, ast.Constant) and isinstance(n.value, str) and by_name.match(n.value)]
             for p in modules("manyi")}
    assert {k: v for k, v in named.items() if v} == {}


def test_the_model_imports_nothing_from_the_database_imports_or_web():
    banned = ("analytics.center", "analytics.imports", "analytics.web", "analytics.cases", "analytics.alerts",
              "analytics.votes", "analytics.quarter", "collector", "flask", "sqlite3", "manyi.clock")
    assert offending(modules("analytics/model"), banned) == {}


def test_rules_are_pure_and_persistence_is_in_the_database_package():
    pure = [ROOT / "analytics/cases/rules.py", ROOT / "analytics/alerts/rules.py", ROOT / "analytics/appeals/rules.py",
            ROOT / "analytics/accounts.py"]
    banned = ("analytics.center", "analytics.web", "analytics.votes", "collector", "flask", "sqlite3")
    assert offending(pure, banned) == {}


def test_the_database_package_imports_only_the_standard_library_manyi_and_pure_rules():
    allowed = ("analytics.center", "analytics.accounts", "manyi", "werkzeug.security")
    stdlib = {"__future__", "json", "secrets", "sqlite3", "threading", "re", "datetime", "pathlib", "dataclasses",
              "typing"}
    found = {}
    for path in modules("analytics/center"):
        bad = sorted(n for n in imports(path) if n.split(".")[0] not in stdlib
                     and not any(n == a or n.startswith(a + ".") for a in allowed))
        if bad:
            found[rel(path)] = bad
    assert found == {}


def test_nothing_imports_the_web_package():
    outside = [p for p in modules(*PACKAGES) if not rel(p).startswith("analytics/web/")]
    assert offending(outside, ("analytics.web",)) == {}


def sql_literals(path: Path) -> list[int]:
    """Line numbers of string literals holding SQL (docstrings are prose, not SQL)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and SQL.search(node.value)]


def test_sql_appears_only_in_the_database_package_the_stores_and_the_outbox():
    found = {rel(p): sql_literals(p) for p in modules(*PACKAGES) if not rel(p).startswith(SQL_HOMES)}
    assert {k: v for k, v in found.items() if v} == {}
    # and the check does see SQL where it is
    assert sql_literals(ROOT / "analytics/center/cases.py") and sql_literals(ROOT / "device/outbox.py")


def test_migrations_are_the_only_place_tables_are_made():
    found = [rel(p) for p in modules(*PACKAGES) if rel(p).startswith("analytics/")
             and "CREATE TABLE" in p.read_text(encoding="utf-8")]
    assert found == []      # analytics/center/migrations/*.sql hold them all


@pytest.mark.parametrize("path", modules("analytics"), ids=rel)
def test_no_analytics_module_is_over_500_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_ANALYTICS_LINES, f"{rel(path)} has {lines} lines: split it by concern"


def test_the_architecture_document_names_every_package():
    doc = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    packages = {rel(p.parent) + "/" for p in modules(*PACKAGES) if p.name == "__init__.py"}
    missing = sorted(p for p in packages if p not in doc and not p.startswith("analytics/web/"))
    assert missing == []
