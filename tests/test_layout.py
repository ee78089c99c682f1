"""The house rules, checked: no import cycle among humback's modules, and no stage module imports another
stage module (shared helpers live in modules of their own)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "humback"
# Stages of the loop and its evaluation: each is a plain function over files; they meet only through
# shared helpers (scoring, records, rundir, generation, ...). calibrate is such a helper too: a judge
# measurement that `humback eval` applies to each iteration's judge and `humback calibrate` to any judge.
STAGES = {
    "humback.data.seed",
    "humback.data.segment",
    "humback.training.sft",
    "humback.augment",
    "humback.curate",
    "humback.rewrite",
    "humback.evaluate",
    "humback.export",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every humback module -> the humback modules it imports (at any depth of its code)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name, deps = module_name(path), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("humback"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("humback"))
        found[name] = deps - {name}
    return found


def test_no_stage_imports_another_stage():
    graph = imports()
    crossing = {(m, d) for m in STAGES for d in graph[m] if d in STAGES}
    assert not crossing, crossing


def test_no_import_cycle():
    graph = imports()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != 1, " -> ".join(trail + [m, d])
            if d not in state:
                visit(d, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_ray_is_imported_only_by_the_cluster_modules():
    """Ray belongs to the runner that places rows on it, Ray Train and the connection: no stage, backend or
    factory imports it."""
    allowed = {"humback.cluster", "humback.ray_runner", "humback.training.ray_train"}
    importers = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.add(module_name(path))
    assert importers and importers <= allowed, importers - allowed


def test_the_readme_shows_the_run_tree_rundir_documents():
    """One run tree, temporary files included: rundir.py's docstring and the README show the same."""
    import re

    import humback.rundir

    tree = re.search(r"```\n(.*?)```", humback.rundir.__doc__, re.DOTALL).group(1)
    readme = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"## The run directory\n\n```\n{tree}```" in readme
    for temporary in (
        ".partial",
        ".partial.settings.json",
        ".shards/",
        ".tmp/",
        "eval/",
        "calibration/iter<t>",
    ):
        assert temporary in tree
