"""streamchat.pubsub is a standalone library: it imports nothing else of streamchat."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import streamchat.pubsub

PACKAGE = Path(streamchat.pubsub.__file__).parent


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by ``path``, relative imports resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names.append(".".join([*base, node.module] if node.module else base))
            else:
                names.append(node.module or "")
    return names


def test_no_module_imports_streamchat_outside_pubsub() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10
    offending = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in modules
        for name in _imports(path)
        if (name == "streamchat" or name.startswith("streamchat."))
        and not (name == "streamchat.pubsub" or name.startswith("streamchat.pubsub."))
    ]
    assert offending == []


def test_the_resolver_sees_relative_imports() -> None:
    # Guards the test above: a relative import that leaves the package must be caught.
    names = _imports(PACKAGE / "backends" / "stores" / "sql.py")
    assert "streamchat.pubsub._errors" in names


def test_importing_every_backend_loads_no_other_streamchat_module() -> None:
    code = (
        "import sys, importlib\n"
        "from streamchat.pubsub._registry import BROKERS, STORES\n"
        "for path in {*BROKERS.values(), *STORES.values()}:\n"
        "    importlib.import_module(path.partition(':')[0])\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('streamchat')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(result.stdout.split())
    assert "streamchat.pubsub.backends.brokers.redis" in loaded
    assert loaded - {"streamchat"} == {m for m in loaded if m.startswith("streamchat.pubsub")}


def test_optional_dependencies_are_imported_lazily() -> None:
    code = (
        "import sys\n"
        "from streamchat.pubsub import PubSub\n"
        "PubSub()\n"
        "print(' '.join(m for m in ('redis', 'nats', 'asyncpg', 'sqlalchemy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == []
