"""The worker process never imports torch (CUDA is not fork-safe; a trainer crash must never take
the worker down): nothing in r1lab imports it, and loading the pipelines' task, runner, service
and view modules (what a worker and the web server load) pulls none of torch/transformers/deepspeed.
The real-worker test also checks the live worker process's memory maps after running a stage."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "deepspeed", "vllm")


def _imports_torch_at_load(module: str) -> bool:
    """A training_backend module whose top level imports torch (config, rewards, reflection don't)."""
    if module.split(".")[0] != "training_backend":
        return False
    base = ROOT / Path(*module.split("."))
    path = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
    if not path.exists():
        return False
    for node in ast.parse(path.read_text()).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        if any(n.split(".")[0] in HEAVY for n in names):
            return True
    return False


def test_no_module_in_r1lab_imports_torch_or_a_trainer_module_that_does():
    offenders = []
    for path in sorted((ROOT / "r1lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top in HEAVY or _imports_torch_at_load(name):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_loading_the_worker_and_web_modules_pulls_no_torch():
    code = (
        "import django, os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'r1lab.settings')\n"
        "django.setup()\n"
        "import r1lab.celery, r1lab.pipelines.tasks, r1lab.pipelines.runner, r1lab.pipelines.services\n"
        "import r1lab.pipelines.views, r1lab.pipelines.forms, r1lab.pipelines.demo\n"
        "from r1lab.pipelines.demo import demo_config; demo_config()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in %r]\n"
        "assert not bad, bad\n" % (HEAVY,)
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_inspecting_a_model_folder_loads_no_torch_in_the_web_process(tmp_path):
    """The models page's check reads a folder with transformers, in a subprocess: the process
    that asked (the web server) still has none of torch/transformers loaded afterwards."""
    from tests.training_backend.stage_factories import make_model

    folder = make_model(tmp_path / "model")
    code = (
        "import django, os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'r1lab.settings')\n"
        "django.setup()\n"
        "from r1lab.pipelines.model_check import inspect_model_folder\n"
        "info = inspect_model_folder(sys.argv[1])\n"
        "assert info['architecture'] == 'LlamaForCausalLM', info\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in %r]\n"
        "assert not bad, bad\n" % (HEAVY,)
    )
    result = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
