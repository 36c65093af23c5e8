"""`crowdselect` checks arguments, files and the output folder before Ray starts, and owns its output folder.

Each command runs as a real subprocess with a private Ray temp dir: a check that happens before Ray leaves
that dir absent (Ray creates it on start-up) and answers in seconds, not the minute a Ray start takes here.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crowdselect.core.paths import OutDirLock

ROOT = Path(__file__).resolve().parents[2]
CROWD = ROOT / "examples" / "crowd.yaml"
POOL = ROOT / "examples" / "crowd.jsonl"


def cli(tmp_path, *args, timeout=120):
    """Run the CLI; returns (exit code, stderr, seconds, whether Ray started)."""
    ray_tmp = tmp_path / "ray"
    env = {**os.environ, "CROWDSELECT_RAY_TMP": str(ray_tmp), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "crowdselect.cli", *args], capture_output=True, text=True,
                       env=env, timeout=timeout, cwd=ROOT)
    return r.returncode, r.stderr, time.perf_counter() - t0, ray_tmp.exists()


def test_missing_input_is_reported_fast_without_starting_ray(tmp_path):
    out = tmp_path / "out"
    code, err, seconds, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input",
                                          str(tmp_path / "nope.jsonl"), "--out", str(out))
    assert code == 2 and "--input" in err and "nope.jsonl: no such file or directory" in err
    assert "Traceback" not in err
    assert not ray_started and not out.exists()  # no Ray, and no output folder for a run that cannot start
    assert seconds < 30


def test_an_hf_input_offline_is_one_line_before_ray_starts(tmp_path):
    """HF_HUB_OFFLINE=1 (tests/conftest.py), as on a machine without a network: the real HfFileSystem refuses."""
    uri = "hf://datasets/Magpie-Align/Magpie-100K-Generator-Zoo/data"
    code, err, seconds, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", uri, "--out",
                                          str(tmp_path / "o"), "--executor", "ray")
    assert code == 2 and "Traceback" not in err and not ray_started, err[-2000:]
    assert f"crowdselect: error: --input {uri}: cannot reach the Hugging Face Hub (offline?): " in err
    assert len(err.strip().splitlines()) == 1 and seconds < 30


def test_out_naming_a_file_exits_2(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code, err, _, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                                    "--out", str(target))
    assert code == 2 and f"--out {target}: is an existing file" in err and not ray_started
    assert target.read_text() == "keep me"
    code, err, _, _ = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                          "--out", str(target / "below"))
    assert code == 2 and "is a file, so the folder cannot be created" in err


def test_out_a_dangling_link_or_the_root_exits_2(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    for out in (link, link / "below"):
        code, err, _, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                                        "--out", str(out))
        assert code == 2 and f"{link} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in err
        assert "Traceback" not in err and not ray_started
    code, err, _, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL), "--out", "/")
    assert code == 2 and "--out /: is the filesystem root" in err and not ray_started


@pytest.mark.parametrize("command", ["train", "eval", "experiment"])
def test_every_command_refuses_out_naming_a_file_before_any_work(tmp_path, command):
    config = {"train": "train.yaml", "eval": "eval.yaml", "experiment": "experiment_cpu.yaml"}[command]
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code, err, seconds, ray_started = cli(tmp_path, command, str(ROOT / "examples" / config), "--out", str(target))
    assert code == 2 and f"--out {target}: is an existing file" in err and "Traceback" not in err
    assert not ray_started and seconds < 30 and target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_that_cannot_be_written_exits_2(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    code, err, _, _ = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                          "--out", str(locked / "out"))
    assert code == 2 and "permission denied" in err


def test_a_bad_flag_is_blamed_on_the_flag(tmp_path):
    code, err, _, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                                    "--k", "-5", "--out", str(tmp_path / "o"))
    assert code == 2 and "crowdselect: error: --k: must be >= 1, got -5" in err and not ray_started


def test_a_ray_address_where_nothing_listens_exits_3_in_seconds(tmp_path):
    """ray.init would retry such an address for about 14 minutes; the CLI probes it and says so in one line."""
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err, seconds, _ = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL), "--out",
                                str(tmp_path / "o"), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}")
    assert code == 3 and "Traceback" not in err, err[-2000:]
    assert f"crowdselect: error: could not join Ray at 127.0.0.1:{port} (tried twice): nothing answers at " \
           f"127.0.0.1:{port} (Connection refused)" in err
    assert seconds < 60


def test_a_second_run_into_a_folder_in_use_refuses(tmp_path):
    """A live run (another process holding DIR's lock) makes a second run into DIR exit 2 before any work."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from crowdselect.core.paths import OutDirLock\n"
         f"with OutDirLock({str(out)!r}):\n    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err, _, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                                        "--out", str(out))
        assert code == 2 and "another crowdselect run is writing here" in err
        assert f"pid {holder.pid}" in err and not ray_started
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in out.iterdir()) == [".crowdselect.lock"]  # the second run wrote nothing


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    owner = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier"}
    (tmp_path / ".crowdselect.lock").write_text(json.dumps(owner))
    with OutDirLock(str(tmp_path)) as lock:
        assert f'"pid": {os.getpid()}' in lock.path.read_text()
    assert not (tmp_path / ".crowdselect.lock").exists()  # released on exit


def test_pickle_only_embedder_folder_exits_2_before_ray(tmp_path):
    (tmp_path / "emb").mkdir()
    (tmp_path / "emb" / "config.json").write_text("{}")
    (tmp_path / "emb" / "pytorch_model.bin").write_bytes(b"not loaded")
    for executor in ("ray", "local"):
        code, err, _, ray_started = cli(tmp_path, "select", "--config", str(CROWD), "--input", str(POOL),
                                        "--out", str(tmp_path / "out"), "--executor", executor,
                                        "--embedder", str(tmp_path / "emb"))
        assert code == 2 and "embedder.model: model" in err and "holds only pickle weights" in err, err
        assert "Traceback" not in err and not ray_started
