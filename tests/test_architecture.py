"""The house rules that keep the core sans-I/O, checked on every test run.

Pure modules decide; shells act. A pure module may import only the standard library's
computation modules, a short list of computation-only third-party packages, and other pure
modules — so no clock, no randomness source, no socket, no process, no event loop can creep in,
directly or through a shell module. This is what lets the simulator run the real protocol code.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Packages (and their sub-packages) that must stay pure.
PURE_PACKAGES = ("tva", "crdt", "mesh.core", "mesh.invites", "agent.policy", "wg.plan", "agent.door",
                 "media.title_parse", "media.probe_parse", "media.library_model", "agent.unit_files",
                 "agent.notify_core", "media.http_ranges", "media.signed_urls", "media.hls_plan")

# Anything that touches time, randomness, the OS, the network or an event loop.
FORBIDDEN_ROOTS = {
    "os", "time", "random", "secrets", "uuid", "socket", "subprocess", "trio", "anyio", "asyncio",
    "threading", "multiprocessing", "concurrent", "select", "selectors", "signal", "shutil",
    "tempfile", "pathlib", "io", "logging", "datetime", "urllib", "http", "ssl", "sys",
    "libp2p", "libtorrent", "pyroute2", "transmission_rpc", "hypercorn", "starlette", "httpx",
}
# Third-party packages that only compute.
ALLOWED_THIRD_PARTY = {"cryptography", "msgpack"}
PROJECT_ROOTS = {"tva", "agent", "mesh", "crdt", "wg", "media", "cli", "simulations"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_pure(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PURE_PACKAGES)


def _pure_files() -> list[Path]:
    files = []
    for pkg in PURE_PACKAGES:
        base = ROOT.joinpath(*pkg.split("."))
        if base.is_dir():
            files.extend(sorted(base.rglob("*.py")))
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    this = _module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = this.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _violation(name: str) -> str | None:
    root = name.split(".")[0]
    if root == "__future__":
        return None
    if root in FORBIDDEN_ROOTS:
        return "does I/O, reads a clock or randomness, or runs an event loop"
    if root in PROJECT_ROOTS:
        return None if _is_pure(name) else "is a shell module (not in PURE_PACKAGES)"
    if root in ALLOWED_THIRD_PARTY:
        return None
    if root in sys.stdlib_module_names:
        return None
    return "is a third-party package not on the pure allow-list"


def test_pure_packages_import_no_io():
    files = _pure_files()
    assert files, "no pure modules found: PURE_PACKAGES is out of date"
    problems = []
    for path in files:
        for lineno, name in _imports(path):
            why = _violation(name)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{lineno}: imports {name!r}, which {why}")
    assert not problems, "pure-core rule broken:\n" + "\n".join(problems)


def test_the_rule_catches_a_violation(tmp_path):
    # The checker itself must be able to fail: a pure-looking file importing time is flagged.
    assert _violation("time") is not None
    assert _violation("trio.lowlevel") is not None
    assert _violation("agent.runtime") is not None
    assert _violation("crdt.feed") is None
    assert _violation("hashlib") is None


def test_ruff_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.fail("ruff is not installed in the test environment: run ./setup.sh test")
    result = subprocess.run([str(ruff), "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_modules_stay_small():
    # ~500 lines per module is the house limit; 650 leaves room for docstrings without excuses.
    big = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        n = sum(1 for _ in path.open())
        if n > 650:
            big.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not big, "modules over the size limit:\n" + "\n".join(big)


# Which packages may not import which: the CLI is the agent's face (it goes through agent/, never
# into the mesh or the CRDTs), and the agent never depends on its face.
LAYER_RULES = {"agent": ("cli",), "cli": ("mesh", "crdt")}


def test_layers_are_kept():
    problems = []
    for package, forbidden in LAYER_RULES.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for lineno, name in _imports(path):
                if name.split(".")[0] in forbidden:
                    problems.append(f"{path.relative_to(ROOT)}:{lineno}: imports {name!r}")
    assert not problems, "layering broken:\n" + "\n".join(problems)
