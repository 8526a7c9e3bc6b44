"""r1lab_client goes into any training script: importing it (and its W&B-style module, the sync
commands) loads nothing outside the standard library. tensorboard and pyarrow are imported by
the sync commands when they read files, transformers only by r1lab_client.trl."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import sys
before = set(sys.modules)
import r1lab_client, r1lab_client.wandb, r1lab_client.rollouts, r1lab_client.sync, r1lab_client.tensorboard
import r1lab_client.__main__
loaded = {m.split(".")[0] for m in set(sys.modules) - before}
print(sorted(loaded - set(sys.stdlib_module_names) - {"r1lab_client"}))
"""


def test_importing_the_client_loads_only_the_standard_library():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
