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
