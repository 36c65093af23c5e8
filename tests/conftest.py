"""Shared test setup: offline HF, a short Ray temp dir, one local Ray cluster per session, layer markers.

The layers are folders and markers alike: tests/unit (no Ray, no models), tests/stage (one stage on a dict
batch, real small models), tests/e2e (local Ray, the CLI), tests/cluster (multi-node, `ray job submit`).
"""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "crowdselect" / "torch_extensions"))
RAY_TMP = os.environ.setdefault("CROWDSELECT_RAY_TMP", "/tmp/rcs")
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # the repo root: tests import bench.synthetic (synthetic crowds are not in the package)
    sys.path.insert(0, ROOT)


def _layer(node) -> str:
    return Path(str(node.fspath)).parent.name


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster shared by the whole session (8 logical CPUs; may exceed the cores).
    Refused to tests/unit (see pytest_runtest_setup)."""
    import ray

    # Ray gives a new raylet a fixed 30 s to register; on a busy host that can pass: try once more.
    for attempt in (1, 2):
        if ray.is_initialized():
            break
        try:
            ray.init(address="local", num_cpus=8, _temp_dir=RAY_TMP, include_dashboard=False, log_to_driver=False)
        except Exception as e:
            if attempt == 2 or "timed out during startup" not in str(e):
                raise
            ray.shutdown()
            _end_own_ray_processes()  # the failed start's GCS and raylet (children of this process)
    yield ray


def _end_own_ray_processes() -> None:
    import psutil

    for proc in psutil.Process().children(recursive=True):
        try:
            if RAY_TMP in " ".join(proc.cmdline()):
                proc.kill()
        except psutil.Error:
            continue


NO_RAY_IN_UNIT = "tests/unit must not start Ray: move this test to tests/stage or tests/e2e"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A unit test asking for the `ray_local` cluster errors before the cluster starts."""
    if _layer(item) == "unit" and "ray_local" in item.fixturenames:
        pytest.fail(f"{item.nodeid}: {NO_RAY_IN_UNIT}", pytrace=False)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_ray(request):
    """A unit test that starts Ray by itself (ray.init, or Ray Data's implicit init) fails loudly.
    Only a start during the test counts: a cluster left by an earlier layer's session fixture is not its doing."""
    before = _ray_running()
    yield
    if _layer(request.node) == "unit" and not before and _ray_running():
        sys.modules["ray"].shutdown()
        pytest.fail(f"{request.node.nodeid}: {NO_RAY_IN_UNIT}", pytrace=False)


@pytest.fixture
def tmp_out(tmp_path):
    return tmp_path


def _ray_running() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


LAYERS = ("unit", "stage", "e2e", "cluster")


def pytest_collection_modifyitems(config, items):
    # Cheap layers first: a unit failure shows in seconds, not after an hour (stable sort keeps file order).
    items.sort(key=lambda item: LAYERS.index(_layer(item)) if _layer(item) in LAYERS else 0)  # doctests: unit-cheap
    for item in items:
        layer = _layer(item)
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)




@pytest.fixture
def train_cfg(tmp_path):
    """A TrainConfig for `path` with `section__key=value` overrides (data.max_length 64, out in tmp_path)."""
    from crowdselect.core.config import build
    from crowdselect.train.config import TrainConfig

    def make(path, **over):
        data = {"data": {"path": [path], "max_length": 64}, "out": str(tmp_path / "out")}
        for key, value in over.items():
            section, name = key.split("__")
            data.setdefault(section, {})[name] = value
        return build(TrainConfig, data, file="test")

    return make
