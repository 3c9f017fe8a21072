"""The package's layers point one way: every import inside src/psohead goes to its own
sub-package or to a lower layer, never up or sideways (checked on the source, imports inside
functions included)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "psohead"
# Low to high. A module may import its own sub-package and anything on a lower layer.
LAYERS = [
    {"errors"},
    {"atomic", "camera", "devices", "progress"},
    {"io", "nn"},
    {"networks"},
    {"checkpoint"},
    {"api"},
    {"preprocess", "export", "metrics", "synth"},
    {"inversion"},
    {"training"},  # the encoder's training uses the inversion's losses and latent statistics
    {"app"},
    {"cli"},
]
TOP = {"__init__", "__main__"}  # the package's entry points may use anything
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def _imports(path: Path):
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] == "psohead":
                    target = node.module.split(".")[1:] or [a.name for a in node.names]
                    yield node.lineno, target[0]
                continue
            base = list(rel[:-1])[:len(rel) - node.level] if node.level > 1 else list(rel[:-1])
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # "from .. import x" at the top: x is a module of the package
                for alias in node.names:
                    yield node.lineno, alias.name
            else:
                yield node.lineno, target[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "psohead" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_every_module_is_on_a_layer():
    units = {_unit(p.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("*.py")} - TOP
    assert units <= set(LEVEL), f"modules without a layer: {sorted(units - set(LEVEL))}"


def test_imports_point_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path.relative_to(PACKAGE).parts)
        if unit in TOP:
            continue
        for line, target in _imports(path):
            if target == unit or target in ("__version__",):
                continue
            if target not in LEVEL or LEVEL[target] >= LEVEL[unit]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({unit}) imports {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)
