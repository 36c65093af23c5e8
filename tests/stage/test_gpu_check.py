"""bench/gpu_check.py --smoke: the GPU throughput check runs end to end on the CPU with a tiny model, without
Ray, DeepSpeed, vLLM or pyarrow importable (as on the lent GPU machine), so it cannot rot unnoticed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ABSENT = ("ray", "deepspeed", "vllm", "pyarrow")  # None in sys.modules: `import ray` raises ImportError


def test_smoke_mode_measures_both_paths_without_ray_or_deepspeed():
    code = ("import runpy, sys\n"
            f"for m in {ABSENT!r}: sys.modules[m] = None\n"
            "sys.argv = ['bench/gpu_check.py', '--smoke']\n"
            "runpy.run_path('bench/gpu_check.py', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                               "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["card"] == "cpu" and result["smoke"] is True
    for path in ("crowdselect", "plain"):
        run = result["train"][path]
        assert run["tokens"] > 0 and run["tokens_per_s"] > 0 and 0 < run["mfu"] < 1
    assert result["train"]["crowdselect"]["tokens"] == result["train"]["plain"]["tokens"]  # the same rows
    judge = result["judge"]
    assert judge["rows"] == 16 and judge["helper_tokens_per_s"] > 0 and judge["bare_tokens_per_s"] > 0
    assert result["ratios"]["train_tokens_per_s"] > 0 and result["ratios"]["judge_tokens_per_s"] > 0
    assert "ratios (crowdselect / plain)" in proc.stdout
