"""training_backend is a plain library: nothing in it may import Django or r1lab."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("django", "r1lab", "channels", "celery")


def test_no_django_imports_in_training_backend():
    offenders = []
    for path in sorted((ROOT / "training_backend").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_importing_the_whole_package_pulls_no_django():
    code = (
        "import importlib, pkgutil, sys, training_backend\n"
        "for m in pkgutil.walk_packages(training_backend.__path__, 'training_backend.'):\n"
        "    if m.name.endswith('__main__'): continue\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'r1lab')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_config_is_importable_without_torch():
    """The web process validates stage configs with training_backend.config: no torch there."""
    code = (
        "import sys, training_backend.config\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'deepspeed')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


APPS = ("accounts", "tracking", "curation", "pipelines", "rollouts")
# Which r1lab app may import which: rollouts → pipelines → tracking / curation → accounts.
MAY_IMPORT = {
    "accounts": set(),
    "tracking": {"accounts"},
    "curation": {"accounts"},
    "pipelines": {"accounts", "tracking", "curation"},
    "rollouts": {"accounts", "tracking", "curation", "pipelines"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):  # function-level imports count too: they are links all the same
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            if node.module == "r1lab":
                for a in node.names:
                    yield node.lineno, f"r1lab.{a.name}"


def test_apps_depend_in_one_direction():
    offenders = []
    for app in APPS:
        for path in sorted((ROOT / "r1lab" / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for line, name in _imports(path):
                parts = name.split(".")
                if parts[0] == "r1lab" and len(parts) > 1 and parts[1] in APPS and parts[1] != app \
                        and parts[1] not in MAY_IMPORT[app]:
                    offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, offenders


def test_apps_link_by_import_not_by_name():
    """No importlib / import-by-string between apps: a link shows in any import graph."""
    offenders = []
    for path in sorted((ROOT / "r1lab").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for line, name in _imports(path):
            if name == "importlib":
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports importlib")
    assert not offenders, offenders


# The worker <-> trainer contract lives in training_backend/stage.py; the worker side imports it.
CONTRACT_LITERALS = ("R1LAB_PROGRESS", "outputs.json", "SPEC.json", "R1LAB_RUN_TOKEN", "trainer_state.json")


def test_the_worker_does_not_restate_the_trainer_contract():
    offenders = []
    for path in sorted((ROOT / "r1lab").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                hit = [lit for lit in CONTRACT_LITERALS if lit in node.value]
                if hit:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} restates {hit}")
    assert not offenders, offenders


def test_the_contract_module_is_standard_library_only():
    """The worker (Django, never torch) imports training_backend.stage."""
    code = (
        "import sys, training_backend.stage\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'deepspeed', 'django')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
