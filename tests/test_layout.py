"""The package's shape: every module imports on its own, no import cycle, imports at the top.

These are the habits that keep the layout readable (one subpackage per pipeline stage, one job per
module): a cycle or a stray import fails here, not in a user's session.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "domainbert"

#: The import statements allowed inside a function, and why: TensorBoard, an optional extra the loop
#: uses only when it is installed. (The CLI's command table and the package's lazy public names load
#: modules with ``importlib.import_module``, a call, not an import statement.)
LAZY_IMPORTS = {("train/pretrain.py", "torch.utils.tensorboard")}


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(domainbert modules imported at module level, imports found inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    nested: list[tuple[int, str]] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:  # relative imports are not used in domainbert; resolve them anyway
            pkg = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level]
            base = ".".join([*pkg, base] if base else pkg)
        return [base] + [f"{base}.{a.name}" for a in node.names]

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    nested.append((child.lineno, names(child)[0]))
                elif not type_checking:
                    top.update(n for n in names(child) if n.split(".")[0] == "domainbert")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True, type_checking)
            elif isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                visit(child, in_function, True)
            else:
                visit(child, in_function, type_checking)

    visit(tree, False, False)
    return top, nested


def test_every_module_imports_on_its_own() -> None:
    """Each module in a fresh interpreter state (forked after the third-party packages load), first."""
    script = f"""
import os, sys, importlib
import numpy, torch, tokenizers, safetensors, tqdm, yaml, pysbd, seqeval, matplotlib, fastapi, uvicorn
failed = []
for name in {[m for m in _modules() if m != "domainbert.__main__"]!r}:  # __main__ runs the CLI
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            print(f"{{name}}: {{type(exc).__name__}}: {{exc}}", flush=True)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(name)
sys.exit(1 if failed else 0)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_import_cycles() -> None:
    modules = set(_modules())
    graph: dict[str, set[str]] = {}
    for name in modules:
        path = PACKAGE.parent.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        top, _ = _imports(path)
        # "from domainbert.x import y" names module x (or x.y when y is a module); a package
        # imports its __init__ first, which is an edge too.
        deps = {n for n in top if n in modules}
        deps |= {".".join(n.split(".")[:k]) for n in deps for k in range(2, n.count(".") + 1)}
        own_packages = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        graph[name] = deps - {name} - own_packages  # a module's own packages load before it, always
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_imports_sit_at_the_top() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, module in _imports(path)[1]:
            if (rel, module) not in LAZY_IMPORTS:
                found.append(f"{rel}:{line} imports {module} inside a function")
    assert not found, "; ".join(found) + " (move it to the top of the module, or list it in LAZY_IMPORTS with why)"


def test_each_package_says_what_its_stage_takes_and_gives() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) >= 3, f"{init} needs a docstring saying what the stage takes and gives"


#: Modules that may import packages of an optional extra (pyproject's [project.optional-dependencies]).
EXTRA_MODULES = {"serve/app.py": "serve", "serve/__init__.py": "serve"}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """A package imported at module level must be in pyproject's dependencies (or the module's extra):
    a user's `pip install domainbert` has only those, while the test environment has much more."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    declared = names(project["dependencies"])
    extras = {k: names(v) for k, v in project["optional-dependencies"].items()}
    dists = packages_distributions()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        allowed = declared | extras.get(EXTRA_MODULES.get(rel, ""), set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "domainbert" or top in sys.stdlib_module_names or (rel, module) in LAZY_IMPORTS:
                    continue
                found = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not found & allowed:
                    missing.append(f"{rel} imports {top} ({', '.join(sorted(found))})")
    assert not missing, "; ".join(sorted(set(missing))) + ": declare it in pyproject.toml's dependencies"


#: The pipeline's stages in order; a module imports only its own stage and the ones before it.
STAGES = ("data", "model", "train", "blurb", "serve")
#: Modules of a later stage that earlier ones may use, with why.
SHARED_BELOW = {"domainbert.model.hub": "turns a directory or Hub repo id into a folder; `vocab build --compare`, "
                                        "`data prepare --vocab` and the tokenizer take a vocabulary by Hub id too"}


def test_imports_run_down_the_pipeline() -> None:
    """data -> model -> train -> blurb -> serve: no stage reaches up to a later one (the data stage once
    imported the BLURB registry to find the test files it decontaminates against)."""
    found = []
    for name in _modules():
        parts = name.split(".")
        if len(parts) < 3 or parts[1] not in STAGES:
            continue  # the package root, the CLI and quickstart sit above every stage
        path = PACKAGE.parent.joinpath(*parts)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        top, nested = _imports(path)
        for module in [*top, *(m for _, m in nested)]:
            target = module.split(".")
            if any(module == m or module.startswith(m + ".") for m in SHARED_BELOW):
                continue
            if target[0] == "domainbert" and len(target) > 1 and target[1] in STAGES \
                    and STAGES.index(target[1]) > STAGES.index(parts[1]):
                found.append(f"{name} imports {module}")
    assert not found, "; ".join(found)
