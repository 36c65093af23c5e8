"""The one-process script a user would write instead of `crowdselect select --no-cluster` (the baseline).

    python bench/plain_select.py CROWD.yaml CROWD.jsonl OUT.jsonl [--k 1000] [--weights 1,1,2]

json + numpy + scipy + sklearn only: read a canonical JSONL crowd, build the (n, G) reward matrix, compute
difficulty (-mean), separability (variance) and stability (mean per-family Spearman of reward vs size),
quantile-normalise with sklearn's QuantileTransformer, score w_D q(D) + w_S q(S) + w_T q(T) (rows without a
defined stability: the first two terms rescaled by (w_D+w_S+w_T)/(w_D+w_S)), rank by score then id and
write the top k ids with the best-rewarded answer. Deliberately does no input validation.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import yaml
from scipy.stats import rankdata
from sklearn.preprocessing import QuantileTransformer


def spearman_rows(r: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    present = ~np.isnan(r)
    rr = rankdata(r, axis=1, nan_policy="omit")
    rs = rankdata(np.where(present, sizes, np.nan), axis=1, nan_policy="omit")
    dr = rr - np.nanmean(rr, axis=1, keepdims=True)
    ds = rs - np.nanmean(rs, axis=1, keepdims=True)
    den = np.sqrt(np.nansum(dr * dr, axis=1) * np.nansum(ds * ds, axis=1))
    rho = np.nansum(dr * ds, axis=1) / den
    rho[(present.sum(axis=1) < 2) | ~(den > 0)] = np.nan
    return rho


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--weights", default="1,1,2")
    args = ap.parse_args()
    gens = yaml.safe_load(open(args.config))["generators"]
    names = [g["name"] for g in gens]
    col = {n: j for j, n in enumerate(names)}
    ids, instructions, answers, rows = [], [], [], []
    with open(args.input) as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            r = [np.nan] * len(names)
            a = [None] * len(names)
            for x in obj["responses"]:
                if x["reward"] is not None:
                    r[col[x["model"]]] = x["reward"]
                    a[col[x["model"]]] = x["response"]
            ids.append(str(obj["id"]))
            instructions.append(obj["instruction"])
            answers.append(a)
            rows.append(r)
    R = np.array(rows, dtype=float)
    warnings.simplefilter("ignore", RuntimeWarning)
    d = -np.nanmean(R, axis=1)
    s = np.nanvar(R, axis=1)
    fam = np.array([g["family"] for g in gens])
    size = np.array([float(g["size_b"]) for g in gens])
    per = [spearman_rows(R[:, fam == f], size[fam == f]) for f in dict.fromkeys(fam) if (fam == f).sum() >= 2]
    t = np.nanmean(np.stack(per, axis=1), axis=1) if per else np.full(len(R), np.nan)
    qt = QuantileTransformer(n_quantiles=min(1000, len(R)), subsample=None)
    q = qt.fit_transform(np.stack([d, s, t], axis=1))
    wd, ws, wt = (float(x) for x in args.weights.split(","))
    base = wd * q[:, 0] + ws * q[:, 1]
    score = np.where(np.isnan(q[:, 2]), base * (wd + ws + wt) / (wd + ws), base + wt * np.nan_to_num(q[:, 2]))
    order = np.lexsort((np.array(ids), -np.where(np.isnan(score), -np.inf, score)))[: args.k]
    best = np.argmax(np.where(np.isnan(R), -np.inf, R), axis=1)
    with open(args.out, "w") as f:
        for i in order:
            f.write(json.dumps({"id": ids[i], "instruction": instructions[i], "response": answers[i][best[i]],
                                "model": names[best[i]], "reward": R[i, best[i]], "score": score[i]}) + "\n")


if __name__ == "__main__":
    main()
