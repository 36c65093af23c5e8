"""The cluster configs in cluster/ and the job entrypoints in jobs/ are valid for the tools that read them.

- Ray autoscaler YAMLs (AWS, GCP): Ray's own ray-schema.json, then Ray's `prepare_config` + `validate_config`
  (what `ray up` runs before launching anything), then Ray's own bin-packing (`get_nodes_for`) to show that
  the resource requests crowdselect/resources.py makes bring up the intended node type.
- KubeRay manifests: the fields KubeRay's CRDs require (headGroupSpec.template; groupName, minReplicas,
  maxReplicas, template per worker group; containers with name and image; rayStartParams as strings), and
  Ray's own RayCluster-to-autoscaler translation (what the in-tree autoscaler runs in the head pod).
- jobs/: each entrypoint is headed by its `ray job submit` command and runtime_env.yaml is a valid RuntimeEnv.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private import util as autoscaler_util
from ray.autoscaler._private.kuberay import utils as kuberay_utils
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

from crowdselect.runtime import resources

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
AUTOSCALER_CONFIGS = ["aws.yaml", "gcp.yaml"]
# GPUs per instance / machine type, from the clouds' instance-type pages.
GPUS = {"p5.48xlarge": ("H100", 8), "p4d.24xlarge": ("A100", 8), "g6.12xlarge": ("L4", 4),
        "a3-highgpu-8g": ("H100", 8), "a2-highgpu-8g": ("A100", 8), "g2-standard-48": ("L4", 4)}
ACCELERATORS = {"H100", "A100", "L4"}
RAY_TAG = f"{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def instance_type(node_config: dict) -> str:
    return node_config.get("InstanceType") or node_config.get("machineType") or ""


def scorer():
    return functools.partial(_default_utilization_scorer,
                             node_availability_summary=NodeAvailabilitySummary(node_availabilities={}))


def nodes_for(config: dict, demands: list[dict]) -> tuple[dict, list]:
    """Ray's autoscaler bin-packing: which node types it launches for these pending resource demands."""
    types = config["available_node_types"]
    added, residual = get_nodes_for(types, {}, config["head_node_type"], 100, demands, scorer())
    return dict(added), residual


# ---------------------------------------------------------------- Ray autoscaler (AWS, GCP)


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_autoscaler_config_passes_rays_schema_and_ray_up_checks(name):
    raw = load(name)
    jsonschema.validate(raw, json.loads(SCHEMA.read_text()))
    prepared = autoscaler_util.prepare_config(copy.deepcopy(raw))  # merges the provider defaults as `ray up`
    autoscaler_util.validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["available_node_types"]["gpu_l4"]["resources"].update(GPU=0.5), "resources"),
    (lambda c: c["available_node_types"]["gpu_h100"].update(gpus=8), "gpus"),
    (lambda c: c.update(max_worker=3), "max_worker"),
])
def test_schema_check_is_live(mutate, field):
    """The same validation rejects what `ray up` would reject, so the passing test above means something."""
    cfg = load("aws.yaml")
    mutate(cfg)
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.validate(cfg, json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_node_types_declare_their_gpus_and_accelerator(name):
    cfg = load(name)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and "GPU" not in head["resources"], "head takes no work"
    seen = set()
    for tname, t in types.items():
        if tname == cfg["head_node_type"]:
            continue
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"], tname
        kind = instance_type(t["node_config"])
        if kind in GPUS:
            accel, n = GPUS[kind]
            assert t["resources"]["GPU"] == n, f"{tname}: {kind} has {n} GPUs"
            assert t["resources"][f"accelerator_type:{accel}"] == 1, f"{tname}: declare accelerator_type:{accel}"
            assert t["min_workers"] == 0, f"{tname}: GPU nodes start only on demand"
            seen.add(accel)
        else:
            assert "GPU" not in t["resources"], f"{tname}: {kind} is not a known GPU type"
    assert seen == ACCELERATORS
    assert sum(t.get("min_workers", 0) for t in types.values()) <= cfg["max_workers"]


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_stage_requests_bring_up_the_right_node_type(name):
    cfg = autoscaler_util.prepare_config(load(name))
    # A vLLM replica of a 70B model: tensor parallel 8 on H100 (one bundle per rank, as ray.data.llm asks).
    tp8 = [resources.for_actor_pool(1, 1, 1, "H100").bundle()] * 8
    assert nodes_for(cfg, tp8) == ({"gpu_h100": 1}, [])
    # Four reward-model actors with one A100 each: one 8-GPU node holds them all.
    rm = [resources.for_actor_pool(4, 1, 4, "A100").bundle()] * 4
    assert nodes_for(cfg, rm) == ({"gpu_a100": 1}, [])
    # Eight small generators on L4s: two 4-GPU nodes.
    small = [resources.for_actor_pool(8, 1, 2, "l4").bundle()] * 8
    assert nodes_for(cfg, small) == ({"gpu_l4": 2}, [])
    # CPU-only Ray Data work never starts a GPU node.
    assert nodes_for(cfg, [{"CPU": 4}] * 8) == ({"cpu_worker": 2}, [])
    # An accelerator the cluster lacks stays pending (the autoscaler warns) instead of landing elsewhere.
    added, residual = nodes_for(cfg, [resources.for_actor_pool(1, 1, 1, "B200").bundle()])
    assert added == {} and residual


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_image_and_setup_match_the_installed_stack(name):
    cfg = load(name)
    image = cfg["docker"]["image"]
    assert image == f"rayproject/ray-llm:{RAY_TAG}-cu128", "the cluster's Ray must equal the driver's"
    setup = " ".join(cfg["setup_commands"])
    assert "deepspeed==" in setup and "peft" in setup
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in " ".join(cfg["head_start_ray_commands"])


def test_gcp_gpu_nodes_stop_for_maintenance():
    """GCE's `scheduling` is a mapping (Ray's own examples wrongly use a list) and GPU VMs cannot live-migrate."""
    for tname, t in load("gcp.yaml")["available_node_types"].items():
        if instance_type(t["node_config"]) not in GPUS:
            continue
        sched = t["node_config"]["scheduling"]
        assert isinstance(sched, dict), f"{tname}: scheduling must be a mapping"
        assert sched["onHostMaintenance"] == "TERMINATE", tname
        if sched.get("preemptible"):
            assert sched.get("automaticRestart") is False, f"{tname}: preemptible VMs cannot auto-restart"


def test_dockerfile_matches_ray_and_copies_real_paths():
    text = (CLUSTER / "Dockerfile").read_text()
    assert f"FROM rayproject/ray-llm:{RAY_TAG}-cu128" in text
    for src in re.findall(r"^COPY (?:--\S+ )*(.+?) \S+$", text, flags=re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"Dockerfile copies {part}, which is not in the repository"


# ---------------------------------------------------------------- KubeRay


def kuberay_problems(spec: dict) -> list[str]:
    """What KubeRay's CRD (ray.io/v1) and operator validation would reject in a RayCluster spec."""
    out = []
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        return ["spec.headGroupSpec: required"]
    out += _pod_problems("headGroupSpec", head)
    names = set()
    for i, g in enumerate(spec.get("workerGroupSpecs", [])):
        key = f"workerGroupSpecs[{i}]"
        for req in ("groupName", "minReplicas", "maxReplicas", "template"):
            if req not in g:
                out.append(f"{key}.{req}: required")
        name = g.get("groupName", "")
        if name in names:
            out.append(f"{key}.groupName: {name!r} used twice")
        names.add(name)
        lo, hi, n = g.get("minReplicas", 0), g.get("maxReplicas", 0), g.get("replicas", g.get("minReplicas", 0))
        if not all(isinstance(v, int) for v in (lo, hi, n)) or not 0 <= lo <= n <= hi:
            out.append(f"{key}: need 0 <= minReplicas <= replicas <= maxReplicas, got {lo}, {n}, {hi}")
        out += _pod_problems(key, g)
    if spec.get("enableInTreeAutoscaling") is not True:
        out.append("enableInTreeAutoscaling: must be true for autoscaling worker groups")
    return out


def _pod_problems(key: str, group: dict) -> list[str]:
    out = []
    params = group.get("rayStartParams", {})
    for k, v in params.items():
        if not isinstance(v, str):
            out.append(f"{key}.rayStartParams.{k}: must be a string (map[string]string), got {v!r}")
    if "resources" in params:
        try:
            custom = json.loads(json.loads(params["resources"]))
            assert isinstance(custom, dict)
        except Exception:
            out.append(f"{key}.rayStartParams.resources: must be '\"{{...json...}}\"', got {params['resources']!r}")
    containers = group.get("template", {}).get("spec", {}).get("containers", [])
    if not containers:
        out.append(f"{key}.template.spec.containers: the Ray container must be the first container")
    for j, c in enumerate(containers):
        for req in ("name", "image"):
            if not c.get(req):
                out.append(f"{key}.template.spec.containers[{j}].{req}: required")
        for section in ("requests", "limits"):
            for res, qty in c.get("resources", {}).get(section, {}).items():
                try:
                    kuberay_utils.parse_quantity(str(qty))
                except Exception:
                    out.append(f"{key}: {section}.{res}: {qty!r} is not a Kubernetes quantity")
    return out


def kuberay_specs() -> dict[str, dict]:
    return {"raycluster": load("kuberay/raycluster.yaml")["spec"],
            "rayjob": load("kuberay/rayjob.yaml")["spec"]["rayClusterSpec"]}


@pytest.mark.parametrize("which", ["raycluster", "rayjob"])
def test_kuberay_cluster_spec_has_what_kuberay_requires(which):
    spec = kuberay_specs()[which]
    assert kuberay_problems(spec) == []
    assert spec["rayVersion"] == ray.__version__
    for g in spec["workerGroupSpecs"]:
        c = g["template"]["spec"]["containers"][0]
        gpus = int(c["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
        custom = json.loads(json.loads(g["rayStartParams"].get("resources", '"{}"')))
        accel = [k.split(":", 1)[1] for k in custom if k.startswith(resources.ACCELERATOR_PREFIX)]
        if gpus:
            assert len(accel) == 1 and accel[0] in ACCELERATORS, g["groupName"]
            assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"]
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/dev/shm" in mounts, f"{g['groupName']}: NCCL needs a larger /dev/shm"
        else:
            assert not accel, g["groupName"]


def test_kuberay_checker_is_live():
    spec = copy.deepcopy(kuberay_specs()["raycluster"])
    bad = spec["workerGroupSpecs"][1]
    del bad["groupName"]
    bad["minReplicas"], bad["maxReplicas"] = 3, 1
    spec["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    spec["workerGroupSpecs"][2]["template"]["spec"]["containers"][0]["image"] = ""
    problems = "\n".join(kuberay_problems(spec))
    for expected in ("groupName: required", "minReplicas <= replicas", "num-cpus: must be a string",
                     "containers[0].image: required"):
        assert expected in problems


def test_rayjob_and_raycluster_describe_the_same_cluster():
    specs = kuberay_specs()
    assert specs["rayjob"] == specs["raycluster"]


def test_kuberay_translation_by_ray_brings_up_the_right_groups():
    """Ray's in-tree autoscaler turns the RayCluster into node types (and validates them); check its choice."""
    cr = load("kuberay/raycluster.yaml")
    cfg = _derive_autoscaling_config_from_ray_cr(cr)
    types = cfg["available_node_types"]
    assert types["gpu-h100"]["resources"]["GPU"] == 8 and types["gpu-h100"]["resources"]["accelerator_type:H100"] == 1
    assert types["headgroup"]["resources"]["CPU"] == 0
    assert nodes_for(cfg, [resources.for_actor_pool(1, 1, 1, "L4").bundle()] * 5) == ({"gpu-l4": 2}, [])
    assert nodes_for(cfg, [resources.for_actor_pool(1, 1, 1, "H100").bundle()] * 8) == ({"gpu-h100": 1}, [])
    assert nodes_for(cfg, [{"CPU": 8}] * 2) == ({"cpu": 1}, [])


def test_rayjob_submits_a_real_entrypoint_and_cleans_up():
    job = load("kuberay/rayjob.yaml")
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
    assert spec["shutdownAfterJobFinishes"] is True and "rayClusterSpec" in spec
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    ray.runtime_env.RuntimeEnv(**env)  # Ray's own validation of the runtime env fields
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python"
    image_root = "/home/ray/crowdselect/"
    script = argv[1].removeprefix(image_root)
    assert (ROOT / script).is_file() and script.startswith("jobs/")
    assert any(a.startswith(("s3://", "gs://")) for a in argv), "a RayJob's run dir must outlive its cluster"


# ---------------------------------------------------------------- jobs/


JOBS = ["run", "select_job", "train", "eval"]


@pytest.mark.parametrize("name", JOBS)
def test_job_entrypoint_is_headed_by_its_submit_command(name):
    path = ROOT / "jobs" / f"{name}.py"
    text = path.read_text()
    doc = text.split('"""')[1]
    command = re.search(r"(ray job submit .*?)(?:\n\n|\Z)", doc, flags=re.S).group(1)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == ["ray", "job", "submit"]
    assert argv[argv.index("--runtime-env") + 1] == "jobs/runtime_env.yaml"
    entry = argv[argv.index("--") + 1:]
    assert entry[:2] == ["python", f"jobs/{name}.py"]
    assert "def main(cfg" in text and 'if __name__ == "__main__":' in text


def test_runtime_env_is_valid_and_holds_no_secrets():
    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    ray.runtime_env.RuntimeEnv(**env)
    assert env["working_dir"] == "."
    assert {".git", ".venv"} <= set(env["excludes"])
    secretish = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|KEY)(_|$)", re.I)
    assert not [k for k in env.get("env_vars", {}) if secretish.search(k)]
