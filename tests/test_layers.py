"""The layers run one way and no module imports itself back: bbmr_stream (core) <- models <- packager, player
<- bench. Every import counts, also the ones inside functions."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bbmr_stream", "models", "packager", "player", "bench")
MAY_IMPORT = {"bbmr_stream": {"bbmr_stream"}, "models": {"bbmr_stream", "models"},
              "packager": {"bbmr_stream", "models", "packager"}, "player": {"bbmr_stream", "models", "player"},
              "bench": set(PACKAGES)}


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
           if d.split(".")[0] not in MAY_IMPORT[m.split(".")[0]]]
    assert not bad, f"imports against the layers: {bad}"


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
