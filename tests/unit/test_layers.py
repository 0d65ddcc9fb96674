"""The shape of the code: the layers run one way and no module imports itself back (bbmr_stream (core) <-
models <- packager, player <- bench; every import counts, also the ones inside functions); only CLI modules
parse arguments; the installed product is the four packages, with the library API at their tops.

The one exception to "packager and player are peers": the player's end-to-end tools (the demo and the live
demo, which package and then play) drive the packager through its API. Nothing in packager imports player."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] if Path(__file__).parent.name in ("unit", "e2e") \
    else Path(__file__).resolve().parents[1]
PRODUCT = ("bbmr_stream", "models", "packager", "player")
PACKAGES = PRODUCT + ("bench",)
MAY_IMPORT = {"bbmr_stream": {"bbmr_stream"}, "models": {"bbmr_stream", "models"},
              "packager": {"bbmr_stream", "models", "packager"}, "player": {"bbmr_stream", "models", "player"},
              "bench": set(PACKAGES)}
END_TO_END = {"player.demo", "player.demo_cli", "player.live_cli", "player.live_selftest"}  # may import packager


def _graph() -> dict[str, set[str]]:
    mods = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for pkg in PACKAGES
            for p in (ROOT / pkg).glob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                cands = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in cands if c in mods and c != name}
        graph[name] = deps
    return graph


def test_layers_run_one_way():
    bad = [(m, d) for m, ds in _graph().items() for d in ds
           if d.split(".")[0] not in MAY_IMPORT[m.split(".")[0]]
           and not (m in END_TO_END and d.split(".")[0] == "packager")]
    assert not bad, f"imports against the layers: {bad}"


def _imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
    return out


def test_only_cli_modules_parse_arguments():
    """argparse (and so an argparse.Namespace) only in cli.py / *_cli.py of the product."""
    bad = [str(p.relative_to(ROOT)) for pkg in PRODUCT for p in (ROOT / pkg).glob("*.py")
           if "argparse" in _imports_of(p) and not (p.name == "cli.py" or p.name.endswith("_cli.py"))]
    assert not bad, f"argparse outside CLI modules: {bad}"


def test_console_scripts_point_into_the_product():
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = conf["project"]["scripts"]
    assert scripts and all(v.split(".")[0] in PRODUCT for v in scripts.values()), scripts
    for name, target in scripts.items():  # each entry point exists and is a CLI module
        mod, fn = target.split(":")
        assert mod.rsplit(".", 1)[-1] == "cli" or mod.endswith("_cli"), (name, target)
        assert f"def {fn}(" in (ROOT / (mod.replace(".", "/") + ".py")).read_text(), (name, target)
    assert not any(p.startswith("bench") for p in conf["tool"]["setuptools"]["packages"]["find"]["include"])


def test_library_api_from_outside_the_checkout(tmp_path):
    """The installed product: the API at the package tops; bench/ is not part of it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("from packager import package, PackageConfig, AutoLadder; from player import play, PlayConfig; "
            "import importlib.util as u; print(u.find_spec('bench') is None)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True", "bench is importable from an installed copy"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"
