#!/usr/bin/env python3
"""The detector against an off-the-shelf learner, leave-one-family-out (issue 24, item 2).

Reads a `bench detect --dump` file (one JSON line per account: seed, class, archetype, the
detector's score and verdict, its features) and compares, on accounts of families held out
of training, the detector with gradient-boosted trees (scikit-learn, default settings) trained
on the per-account features of the other families:

- seeds 1..K are for training, seeds K+1.. for testing (`--train-seeds K`);
- split i holds out benign family i (mod their count) and attack family i: the learner trains
  on the training seeds without either; it is tested on the test seeds' held-out attack
  family against every benign account of the test seeds (so the held-out benign family is
  where its false positives show);
- the splits' test sets are pooled; the detector, which is not trained here, is scored on
  the same pooled accounts.

Usage:
  target/release/distillguard bench detect --hard --seeds 6 --dump out/hard6.jsonl
  python3 bench/learner.py out/hard6.jsonl --train-seeds 3
"""
import argparse
import json
import sys

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score


def features(row, names):
    f = row.get("features") or {}
    out = []
    for n in names:
        v = f.get(n)
        out.append(-1.0 if v is None else float(v))
    return out


def tpr_at_fpr(scores, labels, budget):
    benign = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(budget * len(benign)))
    threshold = benign[allowed] if allowed < len(benign) else -np.inf
    attacks = scores[labels == 1]
    return float(np.mean(attacks > threshold)), float(np.mean(scores[labels == 0] > threshold))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dump")
    p.add_argument("--train-seeds", type=int, default=3)
    a = p.parse_args()
    rows = [json.loads(l) for l in open(a.dump)]
    rows = [r for r in rows if r.get("features")]
    names = sorted(k for k, v in rows[0]["features"].items() if isinstance(v, (int, float)) or v is None)
    benign_fams = sorted({r["archetype"] for r in rows if r["class"] == "benign"})
    attack_fams = sorted({r["archetype"] for r in rows if r["class"] == "attack"})
    train = [r for r in rows if r["seed"] <= a.train_seeds]
    test = [r for r in rows if r["seed"] > a.train_seeds]
    if not train or not test:
        sys.exit("need seeds on both sides of --train-seeds")
    pooled = {"learner": [], "detector": [], "label": [], "distilling": [], "family": []}
    for i, attack in enumerate(attack_fams):
        benign = benign_fams[i % len(benign_fams)]
        tr = [r for r in train if r["archetype"] not in (attack, benign)]
        X = np.array([features(r, names) for r in tr])
        y = np.array([1 if r["class"] == "attack" else 0 for r in tr])
        model = GradientBoostingClassifier(random_state=0).fit(X, y)
        te = [r for r in test if r["class"] == "benign" or r["archetype"] == attack]
        Xt = np.array([features(r, names) for r in te])
        pooled["learner"].extend(model.predict_proba(Xt)[:, 1])
        pooled["detector"].extend(r["score"] for r in te)
        pooled["label"].extend(1 if r["class"] == "attack" else 0 for r in te)
        pooled["distilling"].extend(bool(r["distilling"]) for r in te)
        pooled["family"].extend(r["archetype"] for r in te)
        print(f"split {i}: held out {benign} and {attack}: train {len(tr)}, test {len(te)}", file=sys.stderr)
    y = np.array(pooled["label"])
    print(f"pooled over {len(attack_fams)} splits: {int(y.sum())} held-out attack accounts, {int((1 - y).sum())} benign (each split's benign accounts counted once per split)")
    print("| | AUROC | TPR at FPR <= 0.1 % | at <= 0.5 % | FPR there |")
    print("|---|---|---|---|---|")
    for who in ("detector", "learner"):
        s = np.array(pooled[who], dtype=float)
        t1, f1 = tpr_at_fpr(s, y, 0.001)
        t5, f5 = tpr_at_fpr(s, y, 0.005)
        print(f"| {who} | {roc_auc_score(y, s):.4f} | {t1:.3f} | {t5:.3f} | {f1 * 100:.2f} % / {f5 * 100:.2f} % |")
    d = np.array(pooled["distilling"])
    print(f"detector at `distilling`: TPR {d[y == 1].mean():.3f}, FPR {d[y == 0].mean() * 100:.2f} %")
    fam = np.array(pooled["family"])
    print("held-out attack families, TPR (detector at distilling / learner at FPR <= 0.5 %):")
    s = np.array(pooled["learner"], dtype=float)
    benign_scores = np.sort(s[y == 0])[::-1]
    thr = benign_scores[int(np.floor(0.005 * len(benign_scores)))]
    for f in attack_fams:
        m = (fam == f) & (y == 1)
        if m.any():
            print(f"  {f:22s} {d[m].mean():.2f} / {(s[m] > thr).mean():.2f} ({m.sum()})")


if __name__ == "__main__":
    main()
