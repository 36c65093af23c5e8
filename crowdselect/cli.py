"""`crowdselect` command line: one subcommand per pipeline phase, each a thin call into its module.

    crowdselect select --config CROWD.yaml --input PATH --k K --clusters C --out DIR [key=value ...]
    crowdselect inspect PATH [PATH ...] [--write-config FILE]
    crowdselect run CONFIG.yaml [--out DIR] [--plan] [key=value ...]
    crowdselect train CONFIG.yaml [key=value ...]
    crowdselect eval CONFIG.yaml [key=value ...]
    crowdselect experiment CONFIG.yaml [--out DIR] [key=value ...]

Arguments, config and files are checked before Ray starts. A user error (bad config, bad input rows, an
output folder in use) exits with code 2 and a clear message, never a traceback; Ray failing to start (after
one retry) exits with code 3 and one line. `--verbose` shows Ray's own INFO lines.
"""

from __future__ import annotations

import argparse
import sys

from crowdselect.core import invocation, log
from crowdselect.core.errors import ConfigError, StageError, UserError
from crowdselect.core.secrets import scrub_secrets
from crowdselect.core.text import show
from crowdselect.runtime.ray_setup import RayStartError
from crowdselect.select.config import STRATEGIES


def _select_parser(sub) -> None:
    p = sub.add_parser("select", parents=[COMMON], help="select a subset from a precomputed crowd (instructions x answers x rewards)")
    p.add_argument("--config", help="crowd YAML: generators (name, family, size_b) and any other settings")
    p.add_argument("--input", nargs="+", help="pool files, directories, globs or s3:// gs:// hf://datasets/ URIs")
    p.add_argument("--format", choices=["auto", "canonical", "long", "wide"])
    p.add_argument("--k", type=int, help="rows to select (default 1000)")
    p.add_argument("--clusters", type=int, help="k-means clusters for the equal quota (default 10)")
    p.add_argument("--weights", help="difficulty,separability,stability weights (default 1,1,2)")
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--no-cluster", dest="cluster", action="store_const", const=False,
                   help="rank the whole pool, no cluster quota")
    p.add_argument("--seed", type=int)
    p.add_argument("--embedder", help="HF id, folder or pkg: alias of the sentence embedder")
    p.add_argument("--decontaminate", type=_specs, metavar="SPEC[,SPEC...]",
                   help="remove pool rows that copy eval questions: mt-bench and/or question files")
    p.add_argument("--on-bad-rows", choices=["fail", "quarantine", "skip"], help="skip: old name of quarantine")
    p.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--executor", choices=["auto", "ray", "local"],
                   help="auto (default): in this process for a pool that fits in memory and no cluster named; "
                        "else Ray Data")
    p.add_argument("--out", help="output directory")
    p.add_argument("overrides", nargs="*", help="config overrides key.path=value")


def _specs(text: str) -> list[str]:
    """`mt-bench,arena.jsonl` -> ["mt-bench", "arena.jsonl"]"""
    return [s.strip() for s in text.split(",") if s.strip()]


def _inspect_parser(sub) -> None:
    p = sub.add_parser("inspect", parents=[COMMON], help="show what a crowd table holds and propose a crowd config")
    p.add_argument("paths", nargs="+", metavar="PATH", help="crowd files, directories, globs or s3:// gs:// URIs")
    p.add_argument("--write-config", metavar="FILE", help="also write the proposed crowd config to FILE")


def _common(p) -> None:
    p.add_argument("--verbose", action="store_true", help="also show Ray's INFO lines")


def _phase_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, parents=[COMMON])
    p.add_argument("config", help="YAML config")
    p.add_argument("--out", help="run directory (overrides the config's)")
    p.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    return p


COMMON = argparse.ArgumentParser(add_help=False)
_common(COMMON)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crowdselect", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _select_parser(sub)
    _inspect_parser(sub)
    run = _phase_parser(sub, "run", "generate, reward, score and select end to end (resumable)")
    run.add_argument("--plan", action="store_true",
                     help="print the stage waves, resources and estimated times, then exit before any work")
    _phase_parser(sub, "train", "fine-tune a student on the selection (Ray Train + DeepSpeed / LoRA)")
    _phase_parser(sub, "eval", "evaluate a model with an LLM judge (MT-bench style)")
    _phase_parser(sub, "experiment", "compare selection strategies by the students they train (select, train, eval)")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "select":
        from crowdselect.select.config import FLAG_KEYS, check_paths, load_select_config

        flags = {k: getattr(args, k, None) for k in FLAG_KEYS}
        cfg = load_select_config(args.config, flags, args.overrides)
        check_paths(cfg)  # before the job module (and Ray) is imported: a typo fails in a second
        from crowdselect.select.job import run_select

        return run_select(cfg, config_path=args.config)
    if args.command == "inspect":
        from crowdselect.crowd.inspect import run_inspect

        return run_inspect(args.paths, write_config=args.write_config)
    if args.command == "run":
        from crowdselect.pipeline.job import main as run_main

        return run_main(args.config, out=args.out, overrides=args.overrides, plan=args.plan)
    if args.command == "train":
        from crowdselect.train.job import main as train_main

        return train_main(args.config, out=args.out, overrides=args.overrides)
    if args.command == "eval":
        from crowdselect.eval.job import main as eval_main

        return eval_main(args.config, out=args.out, overrides=args.overrides)
    if args.command == "experiment":
        from crowdselect.pipeline.experiment import main as experiment_main

        return experiment_main(args.config, out=args.out, overrides=args.overrides)
    raise AssertionError(args.command)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse flags; `key=value` overrides may stand anywhere, before or after flags."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if "=" not in x or x.startswith("-")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = list(getattr(args, "overrides", None) or []) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    invocation.record(sys.argv[1:] if argv is None else argv)
    log.configure(verbose=args.verbose)
    try:
        return dispatch(args)
    except (ConfigError, UserError) as e:
        print(f"crowdselect: error: {show(scrub_secrets(str(e)))}", file=sys.stderr)
        return 2
    except RayStartError as e:
        print(f"crowdselect: error: {e}", file=sys.stderr)
        return 3
    except StageError as e:
        print(f"crowdselect: error: {show(scrub_secrets(str(e)))}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("crowdselect: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
