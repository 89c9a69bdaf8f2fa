"""The shape of src/fulgor, checked on its source: imports go one way (each module imports only its own layer or the
layers before it in tools/gen_architecture_doc.py, with no cycle and no fulgor import hidden inside a function), the
Trainer's state is its own (no other module assigns a Trainer attribute except through a public setter, or reads a
`trainer._...` one), and no source file is over 500 lines."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fulgor"
sys.path.insert(0, str(ROOT / "tools"))

import gen_architecture_doc as layout  # noqa: E402

from fulgor.trainer.properties import Setting  # noqa: E402
from fulgor.trainer.trainer import Trainer  # noqa: E402

MAX_LINES = 500
# The files that are the Trainer class itself (its entry points and its views).
TRAINER_FILES = {"trainer/trainer.py", "trainer/properties.py"}
# Names under which other modules hold a Trainer.
TRAINER_NAMES = {"trainer", "pl_trainer"}


def relative(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def layer_of() -> dict[str, int]:
    """Module name -> index of its layer."""
    return {layout.module_name(path): index for index, modules in enumerate(layout.LAYERS.values()) for path in modules}


def runtime_imports(path: Path) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(node, imported fulgor module, inside a function) for every import that runs (not under TYPE_CHECKING)."""
    module_names = set(layer_of())
    skipped: set[int] = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    in_function: set[int] = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree(path)):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fulgor":
                    yield node, alias.name, id(node) in in_function
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fulgor":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield node, full if full in module_names else node.module, id(node) in in_function


def test_every_module_has_exactly_one_layer() -> None:
    listed = [path for modules in layout.LAYERS.values() for path in modules]
    on_disk = sorted(relative(p).removesuffix(".py") for p in sources())
    assert sorted(set(listed)) == sorted(listed), "a module is listed in two layers"
    assert sorted(listed) == on_disk, (
        "tools/gen_architecture_doc.py LAYERS must list every module of src/fulgor: add the new ones (with their"
        " layer and responsibility) and run `python tools/gen_architecture_doc.py`"
    )


def test_imports_only_go_to_the_same_or_a_lower_layer() -> None:
    layers, names = layer_of(), list(layout.LAYERS)
    wrong = []
    for path in sources():
        importer = layout.module_name(relative(path).removesuffix(".py"))
        for node, imported, _ in runtime_imports(path):
            if layers[imported] > layers[importer]:
                wrong.append(
                    f"{relative(path)}:{node.lineno} ({names[layers[importer]]}) imports {imported}"
                    f" ({names[layers[imported]]})"
                )
    assert wrong == [], "imports that go up a layer:\n" + "\n".join(wrong)


def test_no_fulgor_import_inside_a_function() -> None:
    """A function-local import of a fulgor module is how a cycle hides; only optional packages are imported late
    (package __init__ files load their optional modules by name, through importlib)."""
    local = [
        f"{relative(path)}:{node.lineno} imports {imported}"
        for path in sources()
        for node, imported, in_function in runtime_imports(path)
        if in_function
    ]
    assert local == []


def test_module_imports_have_no_cycle() -> None:
    graph = {
        layout.module_name(relative(p).removesuffix(".py")): {m for _, m, _ in runtime_imports(p)} for p in sources()
    }
    for name in graph:
        graph[name].discard(name)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _holds_trainer(node: ast.expr) -> bool:
    """`trainer`, `pl_trainer`, `self.trainer`, `self._trainer`, `x.trainer` ..."""
    if isinstance(node, ast.Name):
        return node.id in TRAINER_NAMES
    return isinstance(node, ast.Attribute) and node.attr in {"trainer", "_trainer"}


def _assigned(targets: list[ast.expr]) -> Iterator[ast.Attribute]:
    """The attributes an assignment sets (`a.b = ...`, `a.b, c.d = ...`), not those it only reads (`a.b[0] = ...`)."""
    for target in targets:
        if isinstance(target, ast.Attribute):
            yield target
        elif isinstance(target, (ast.Tuple, ast.List)):
            yield from _assigned(list(target.elts))


def _is_setattr_on_trainer(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "setattr"
        and bool(node.args)
        and _holds_trainer(node.args[0])
    )


def _settable_on_trainer(name: str) -> bool:
    attribute = getattr(Trainer, name, None)
    if isinstance(attribute, Setting):
        return True
    return isinstance(attribute, property) and attribute.fset is not None


def test_no_module_but_the_trainer_assigns_a_trainer_attribute() -> None:
    """Other modules change the Trainer only through its public setters (`trainer.should_stop = True`, a callback's
    `trainer.accumulate_grad_batches = n`), as Lightning's users do; everything else is the run's or the state's."""
    wrong = []
    for path in sources():
        if relative(path) in TRAINER_FILES:
            continue
        for node in ast.walk(tree(path)):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif _is_setattr_on_trainer(node):
                wrong.append(f"{relative(path)}:{getattr(node, 'lineno', 0)}: setattr on a Trainer")
            for target in _assigned(targets):
                if _holds_trainer(target.value) and not _settable_on_trainer(target.attr):
                    wrong.append(f"{relative(path)}:{target.lineno}: assigns trainer.{target.attr}")
    assert wrong == []


def test_no_module_but_the_trainer_reads_a_private_trainer_attribute() -> None:
    pattern = re.compile(r"\b(?:pl_)?trainer\._[A-Za-z]|\b_trainer\._[A-Za-z]|getattr\(\s*(?:pl_)?trainer,\s*[\"']_")
    wrong = [
        f"{relative(path)}:{number}: {line.strip()}"
        for path in sources()
        if relative(path) not in TRAINER_FILES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert wrong == []


@pytest.mark.parametrize("path", sources(), ids=relative)
def test_source_files_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{relative(path)} has {lines} lines: split it by responsibility"


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """The checks above are only worth something if they fail on the kind of code they forbid (a snippet of the
    pre-refactoring Trainer's habits)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(trainer):\n"
        "    from fulgor.trainer import fit_loop\n"
        "    trainer._train_loader = None\n"
        "    trainer.num_training_batches = 0\n"
        "    return trainer._results\n"
    )
    module = ast.parse(bad.read_text())
    assignments = [
        t.attr
        for n in ast.walk(module)
        if isinstance(n, ast.Assign)
        for t in _assigned(n.targets)
        if _holds_trainer(t.value) and not _settable_on_trainer(t.attr)
    ]
    assert assignments == ["_train_loader", "num_training_batches"]
    assert re.search(r"\btrainer\._[A-Za-z]", bad.read_text().splitlines()[4])
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _settable_on_trainer("should_stop")
    assert _settable_on_trainer("accumulate_grad_batches")
    assert not _settable_on_trainer("num_training_batches")
