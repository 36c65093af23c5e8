"""The cluster configs in cluster/ and the job entrypoints in jobs/ are valid for the tools that read them.

- Ray autoscaler YAMLs (AWS, GCP): Ray's own ray-schema.json, then Ray's `prepare_config` + `validate_config`
  (what `ray up` runs before launching anything), then Ray's own bin-packing (`get_nodes_for`) to show that
  the resource requests crowdselect/runtime/resources.py makes bring up the intended node type.
- KubeRay manifests: the fields KubeRay's CRDs require (headGroupSpec.template; groupName, minReplicas,
  maxReplicas, template per worker group; containers with name and image; rayStartParams as strings), and
  Ray's own RayCluster-to-autoscaler translation (what the in-tree autoscaler runs in the head pod).
- What a real cluster needs beyond the schemas, read from the files: the image each node boots (Ray's own AMI
  check keeps ours instead of its CUDA 11.2 default; GCP's image family carries a driver for the cu128 image),
  a cloud identity on every worker type (Ray gives one to the head only) and IAM policies that match the
  config, HF_TOKEN from each platform's secret store into every container (the AWS/GCP initialization command
  is run here against a stand-in `aws`/`gcloud`), /dev/shm sized for Ray's own object-store rule, and a RayJob
  whose config the image can run.
- jobs/: each entrypoint is headed by its `ray job submit` command and runtime_env.yaml is a valid RuntimeEnv.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import ray._private.utils as ray_utils
import yaml
from ray.autoscaler._private import util as autoscaler_util
from ray.autoscaler._private.aws import config as aws_config
from ray.autoscaler._private.kuberay import utils as kuberay_utils
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

from crowdselect.core.secrets import scrub_secrets
from crowdselect.runtime import models, resources

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
AUTOSCALER_CONFIGS = ["aws.yaml", "gcp.yaml"]
# GPUs per instance / machine type, from the clouds' instance-type pages.
GPUS = {"p5.48xlarge": ("H100", 8), "p4d.24xlarge": ("A100", 8), "g6.12xlarge": ("L4", 4),
        "a3-highgpu-8g": ("H100", 8), "a2-highgpu-8g": ("A100", 8), "g2-standard-48": ("L4", 4)}
ACCELERATORS = {"H100", "A100", "L4"}
RAY_TAG = f"{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
# AWS's public parameter naming the region's current "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)"
DLAMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
CUDA_IMAGE = (12, 8)  # the ray-llm image's CUDA (…-cu128): it needs an NVIDIA driver of branch 570 or newer
MIN_DRIVER = 570
HF_ENV_FILE = "~/.crowdselect/hf_token.env"  # written by initialization_commands, read by `docker run --env-file`
SECRET_TOOL = {"aws.yaml": "aws", "gcp.yaml": "gcloud"}
K8S_SHM_DEFAULT = 64 * 1024**2  # a container's /dev/shm without a volume there


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


def worker_types(cfg: dict) -> dict[str, dict]:
    return {k: t for k, t in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def test_aws_nodes_boot_the_current_deep_learning_base_ami():
    """Ray's `ray up` check (`_check_ami`, no cloud calls) keeps our ImageId; without one it boots its CUDA 11.2
    default (Deep Learning AMI Ubuntu 18.04 V71), whose driver cannot run the cu128 image."""
    cfg = autoscaler_util.prepare_config(load("aws.yaml"))
    for node_type in cfg["available_node_types"].values():
        assert node_type["node_config"]["ImageId"] == f"resolve:ssm:{DLAMI_PARAMETER}"
    checked = copy.deepcopy(cfg)
    aws_config._check_ami(checked)
    assert checked["available_node_types"] == cfg["available_node_types"]
    for node_type in cfg["available_node_types"].values():
        del node_type["node_config"]["ImageId"]
    aws_config._check_ami(cfg)  # the check is live: what it does with no ImageId
    assert {t["node_config"]["ImageId"] for t in cfg["available_node_types"].values()} == \
        {aws_config.DEFAULT_AMI[cfg["provider"]["region"]]}
    assert "18.04" in aws_config.DEFAULT_AMI_NAME


def test_gcp_gpu_images_carry_a_driver_for_the_cuda_image():
    cfg = load("gcp.yaml")
    assert cfg["docker"]["image"].endswith("-cu{}{}".format(*CUDA_IMAGE))
    for tname, t in cfg["available_node_types"].items():
        image = t["node_config"]["disks"][0]["initializeParams"]["sourceImage"]
        assert image.startswith("projects/deeplearning-platform-release/global/images/family/"), tname
        if instance_type(t["node_config"]) in GPUS:
            family = re.fullmatch(r".*/common-cu(\d+)(\d)-ubuntu-2204-nvidia-(\d+)", image)
            assert family, f"{tname}: {image} is not a Deep Learning VM CUDA family with its driver branch"
            cuda, driver = (int(family[1]), int(family[2])), int(family[3])
            assert cuda >= CUDA_IMAGE and driver >= MIN_DRIVER, f"{tname}: {image}"


def test_every_worker_type_has_a_cloud_identity():
    """Ray attaches its own profile / service account to the head only (aws/config.py, gcp/config.py): workers
    upload checkpoints, read inputs and write shards, so each type names one."""
    aws = load("aws.yaml")
    assert aws["available_node_types"][aws["head_node_type"]]["node_config"]["IamInstanceProfile"] == \
        {"Name": "crowdselect-head"}
    for tname, t in worker_types(aws).items():
        assert t["node_config"].get("IamInstanceProfile") == {"Name": "crowdselect-worker"}, tname
    gcp = load("gcp.yaml")
    email = f"crowdselect-worker@{gcp['provider']['project_id']}.iam.gserviceaccount.com"
    for tname, t in worker_types(gcp).items():
        assert t["node_config"].get("serviceAccounts") == [
            {"email": email, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}], tname


def allowed(policy: dict, action: str, resource: str) -> bool:
    """True when an Allow statement of the IAM policy grants `action` on `resource` (IAM's * wildcards)."""
    for st in policy["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        arns = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        if st["Effect"] == "Allow" and action in actions and any(fnmatch.fnmatchcase(resource, a) for a in arns):
            return True
    return False


def test_aws_iam_policies_match_the_config():
    """cluster/iam/*.json grant what aws.yaml's nodes do: the --out bucket, the HF token secret; the head also
    passes the worker role to the instances it launches and resolves the AMI parameter."""
    cfg = load("aws.yaml")
    region = cfg["provider"]["region"]
    init = shlex.split(cfg["initialization_commands"][0])
    assert init[init.index("--region") + 1] == region
    secret = f"arn:aws:secretsmanager:{region}:123456789012:secret:{init[init.index('--secret-id') + 1]}-AbCdEf"
    for who in ("head", "worker"):
        policy = json.loads((CLUSTER / "iam" / f"aws-{who}-policy.json").read_text())
        assert policy["Version"] == "2012-10-17"
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert allowed(policy, action, "arn:aws:s3:::my-bucket/crowdselect/runs/x/run.json"), (who, action)
        assert allowed(policy, "s3:ListBucket", "arn:aws:s3:::my-bucket"), who
        assert allowed(policy, "secretsmanager:GetSecretValue", secret), who
        assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::another-bucket/x"), who
    head = json.loads((CLUSTER / "iam" / "aws-head-policy.json").read_text())
    assert allowed(head, "iam:PassRole", "arn:aws:iam::123456789012:role/crowdselect-worker")
    assert allowed(head, "ssm:GetParameters", f"arn:aws:ssm:{region}::parameter{DLAMI_PARAMETER}")
    worker = json.loads((CLUSTER / "iam" / "aws-worker-policy.json").read_text())
    assert not allowed(worker, "iam:PassRole", "arn:aws:iam::123456789012:role/crowdselect-worker")


def run_token_command(name: str, tmp_path: Path, token: str | None) -> tuple[subprocess.CompletedProcess, Path, list]:
    """aws.yaml's / gcp.yaml's initialization command run by bash as on a node, with HOME in tmp_path and the
    cloud CLI replaced by a stand-in that prints `token` (or fails as a missing secret does) and logs its argv."""
    tool = SECRET_TOOL[name]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / tool
    body = f"printf '%s\\n' {shlex.quote(token)}" if token else "echo 'ResourceNotFoundException' >&2; exit 1"
    stub.write_text(f"#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$HOME/argv\"\n{body}\n")
    stub.chmod(0o755)
    env = {"HOME": str(tmp_path), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", load(name)["initialization_commands"][0]], env=env, capture_output=True,
                          text=True, timeout=30)
    argv = (tmp_path / "argv").read_text().split("\n") if (tmp_path / "argv").exists() else []
    return done, tmp_path / HF_ENV_FILE.removeprefix("~/"), argv


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_hf_token_reaches_the_container_from_the_clouds_secret_store(name, tmp_path):
    """The node's init command writes HF_TOKEN=... (mode 600) to the file `docker run --env-file` reads; the
    token is never printed; a missing secret leaves an empty file (docker still starts) and says so."""
    cfg = load(name)
    assert f"--env-file {HF_ENV_FILE}" in cfg["docker"]["run_options"]
    token = "hf_" + "Ab1" * 12
    done, env_file, argv = run_token_command(name, tmp_path, token)
    assert done.returncode == 0, done.stderr
    assert env_file.read_text() == f"HF_TOKEN={token}\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert token not in done.stdout + done.stderr
    secret = "crowdselect/hf-token" if name == "aws.yaml" else "crowdselect-hf-token"
    assert secret in " ".join(argv)
    if name == "gcp.yaml":
        assert f"--project={cfg['provider']['project_id']}" in argv


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_a_node_without_the_hf_secret_still_starts(name, tmp_path):
    done, env_file, _ = run_token_command(name, tmp_path, None)
    assert done.returncode == 0, done.stderr
    assert env_file.read_text() == ""
    assert "gated hub models will be refused" in done.stdout


def test_a_leaked_hf_token_is_scrubbed_from_stored_text():
    """The nodes' HF_TOKEN is never in run.json (configs hold no secrets); should an error echo it, the one scrub
    every stored error text goes through (core/secrets.py) blanks an HF token's shape."""
    token = "hf_" + "Ab1" * 12
    assert scrub_secrets(f"401 Client Error for token {token}: gated repo") == "401 Client Error for token ***: gated repo"


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


def pods(spec: dict) -> dict[str, dict]:
    """group name -> pod spec, the head's as "head"."""
    out = {"head": spec["headGroupSpec"]["template"]["spec"]}
    out.update({g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]})
    return out


@pytest.mark.parametrize("which", ["raycluster", "rayjob"])
def test_kuberay_every_ray_container_has_the_hf_token_and_a_cloud_identity(which):
    """HF_TOKEN from the Secret (never inline) in the head (the job driver) and every group, the cpu group
    included (ray.data.llm's chat-template and tokenize stages and the export land there); every pod runs as
    the `crowdselect` service account that IRSA / Workload Identity binds to a cloud identity."""
    for name, pod in pods(kuberay_specs()[which]).items():
        assert pod.get("serviceAccountName") == "crowdselect", name
        env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
        assert env.get("HF_TOKEN") == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "hf-token", "key": "token", "optional": True}}}, f"{name}: HF_TOKEN from the hf-token Secret"


def shm_bytes(pod: dict) -> int:
    """Size of the pod's /dev/shm: its memory-backed emptyDir's sizeLimit, or the container default."""
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0].get("volumeMounts", [])}
    if "/dev/shm" not in mounts:
        return K8S_SHM_DEFAULT
    volume = next(v for v in pod.get("volumes", []) if v["name"] == mounts["/dev/shm"])
    assert volume["emptyDir"]["medium"] == "Memory", "/dev/shm must be memory-backed"
    return int(kuberay_utils.parse_quantity(volume["emptyDir"]["sizeLimit"]))


@pytest.mark.parametrize("which", ["raycluster", "rayjob"])
def test_kuberay_pods_hold_rays_object_store_in_dev_shm(which, monkeypatch):
    """Ray's own rule (`resolve_object_store_memory`, then /dev/shm only if the store fits, services.py) run
    with each pod's memory limit and /dev/shm: the object store stays in memory, not in a file under /tmp."""
    for name, pod in pods(kuberay_specs()[which]).items():
        limit = int(kuberay_utils.parse_quantity(pod["containers"][0]["resources"]["limits"]["memory"]))
        shm = shm_bytes(pod)
        monkeypatch.setattr(ray_utils, "get_shared_memory_bytes", lambda shm=shm: shm)
        store = ray_utils.resolve_object_store_memory(limit)
        assert store <= shm, f"{name}: object store {store / 2**30:.1f} GiB > /dev/shm {shm / 2**30:.1f} GiB"
        assert shm <= limit // 2, f"{name}: /dev/shm pages count against the pod's memory limit"
    monkeypatch.setattr(ray_utils, "get_shared_memory_bytes", lambda: K8S_SHM_DEFAULT)
    assert ray_utils.resolve_object_store_memory(32 * 2**30) > K8S_SHM_DEFAULT  # the check is live


def test_rayjob_submits_a_real_entrypoint_and_cleans_up():
    job = load("kuberay/rayjob.yaml")
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
    assert spec["shutdownAfterJobFinishes"] is True and "rayClusterSpec" in spec
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    # Ray's own validation of the runtime env fields; working_dir must exist where `ray job submit` runs (the
    # submitter pod, where it is the image's copy of this repository), so this checkout stands in for it
    ray.runtime_env.RuntimeEnv(**{**env, "working_dir": str(ROOT)})
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/run.py"] and (ROOT / argv[1]).is_file()
    assert any(a.startswith(("s3://", "gs://")) for a in argv), "a RayJob's run dir must outlive its cluster"


def config_models(tree) -> list[str]:
    """Every `model:` value in a run config (generators, rewards, embedder, nested sections)."""
    if isinstance(tree, dict):
        return [v for k, v in tree.items() if k == "model" and isinstance(v, str)] + \
            [m for v in tree.values() for m in config_models(v)]
    if isinstance(tree, list):
        return [m for v in tree for m in config_models(v)]
    return []


def test_rayjob_runs_a_config_the_image_can_run():
    """The submitter (the head's image) uploads the image's copy of the repository as working_dir, so the job's
    paths are the repository's; every model the config names is a hub id, or a `pkg:` alias whose packages the
    image installs (the quickstart's are not, so the RayJob runs the GPU quickstart)."""
    spec = load("kuberay/rayjob.yaml")["spec"]
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR (\S+)$", dockerfile, flags=re.M)[1]
    assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"] == workdir
    copied = {p for src in re.findall(r"^COPY (?:--\S+ )*(.+?) \S+$", dockerfile, flags=re.M) for p in src.split()}
    argv = shlex.split(spec["entrypoint"])
    config = argv[2]
    assert {argv[1].split("/")[0], config.split("/")[0]} <= copied
    cfg = yaml.safe_load((ROOT / config).read_text())
    for path in cfg["pool"]["path"] if isinstance(cfg["pool"]["path"], list) else [cfg["pool"]["path"]]:
        assert (ROOT / path).exists() and path.split("/")[0] in copied, path
    installed = " ".join(re.findall(r"pip install [^\n]*(?:\\\n[^\n]*)*", dockerfile))
    models_used = config_models(cfg)
    assert models_used
    for model in models_used:
        if model.startswith(models.PREFIX):
            module = models.ALIASES[model.removeprefix(models.PREFIX)][0]
            assert module.replace("_", "-") in installed, f"{config}: {model} needs {module} in the image"


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
