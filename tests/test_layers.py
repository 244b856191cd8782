"""The layers of m2i_engine import downward only: read every module's imports (no import runs) and check
the arrows that must not exist.

- the config layer (``m2i_engine.config``) is the bottom of the settings tree: it owns every settings
  model and imports nothing from the front ends (queue, server, bots) or from imaging;
- the prompt layer (``m2i_engine.prompt``) turns tags into words and knows nothing of image backends;
- the engine never imports the bots (they are front ends on top of it);
- the engine's parts (imaging, models, analysis, audio, prompt, tags, options) import neither the engine
  nor what sits on it (serving, queue, server, CLI, front ends);
- the engine imports neither the queue, the HTTP server nor serving; the queue never imports the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "m2i_engine"

#: the engine's parts: what a request is analysed, tagged and drawn with
PARTS = (
    "m2i_engine.imaging",
    "m2i_engine.models",
    "m2i_engine.analysis",
    "m2i_engine.audio",
    "m2i_engine.prompt",
    "m2i_engine.tags",
    "m2i_engine.options",
)
#: the engine and everything on top of it
FRONT = (
    "m2i_engine.engine",
    "m2i_engine.serving",
    "m2i_engine.queue",
    "m2i_engine.server",
    "m2i_engine.cli",
    "m2i_engine.frontend",
)

#: (modules under this name, names they must not import, why)
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "m2i_engine.config",
        ("m2i_engine.queue", "m2i_engine.server", "m2i_engine.imaging", "m2i_engine.bot", "bot"),
        "config is the bottom layer: it owns the settings models",
    ),
    ("m2i_engine.prompt", ("m2i_engine.imaging",), "prompts are built before (and without) any backend"),
    ("m2i_engine", ("bot",), "the bots are front ends over the engine"),
    *(
        (layer, FRONT, "the engine's parts sit under the engine and its front ends, never on them")
        for layer in PARTS
    ),
    (
        "m2i_engine.engine",
        ("m2i_engine.queue", "m2i_engine.server", "m2i_engine.serving"),
        "the engine runs a request in this process; the queue, the HTTP server and serving are on top of it",
    ),
    ("m2i_engine.queue", ("m2i_engine.server",), "the queue is the server's back end, not the other way"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (``from a import b`` gives ``a`` and ``a.b``),
    at any depth: inside functions, ``TYPE_CHECKING`` blocks and ``try`` alike."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_walk_sees_the_layers() -> None:
    for layer, _, _ in RULES:
        assert any(within(m, layer) for m in MODULES), f"no module under {layer}"
    assert imported_names(MODULES["m2i_engine.engine"]) >= {"m2i_engine.config"}


@pytest.mark.parametrize(("layer", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_no_upward_imports(layer: str, forbidden: tuple[str, ...], why: str) -> None:
    arrows = []
    for mod, path in MODULES.items():
        if within(mod, layer):
            bad = {name for name in imported_names(path) if any(within(name, f) for f in forbidden)}
            # ``from a.b import C`` is one arrow (a.b), not two (a.b and a.b.C)
            arrows += [f"{mod} imports {name}" for name in sorted(bad) if name.rpartition(".")[0] not in bad]
    assert not arrows, f"{why}:\n" + "\n".join(arrows)
