#!/usr/bin/env python3
"""Builds the bundled sample corpus from the development corpora (shared/data).

Deterministic: the same input gives the same bytes (gzip with no timestamp). Only sources
under MIT, Apache-2.0 or CC-BY-4.0 are taken (ShareGPT, whose licence is unclear, is not).
Usage: python3 make_sample.py [SHARED_DATA_DIR]   (default ../../../../shared/data)
"""
import gzip
import io
import json
import os
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../../shared/data")
out = os.path.dirname(os.path.abspath(__file__))


def write_gz(name, text):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(text.encode("utf-8"))
    with open(os.path.join(out, name), "wb") as f:
        f.write(buf.getvalue())
    return len(buf.getvalue())


def lines(rel):
    with open(os.path.join(src, rel), encoding="utf-8") as f:
        return f.readlines()


sizes = {}
# HH-RLHF harmless (MIT): every dialogue.
sizes["benign-hh-harmless.jsonl.gz"] = write_gz("benign-hh-harmless.jsonl.gz", "".join(lines("corpora/benign-hh-harmless.jsonl")))
# Self-Instruct seeds (Apache-2.0): all of them.
sizes["instruct-selfinstruct-seeds.jsonl.gz"] = write_gz("instruct-selfinstruct-seeds.jsonl.gz", "".join(lines("corpora/instruct-selfinstruct-seeds.jsonl")))
# T0 templated sets (Apache-2.0): the first 20 records of each template, in file order.
per_template = {}
kept = []
for line in lines("corpora/templated-t0-dev.jsonl"):
    t = json.loads(line)["template"]
    per_template[t] = per_template.get(t, 0) + 1
    if per_template[t] <= 20:
        kept.append(line)
sizes["templated-t0-dev.jsonl.gz"] = write_gz("templated-t0-dev.jsonl.gz", "".join(kept))
# GSM8K train (MIT): the first 2,000 problems.
sizes["math-gsm8k-train.jsonl.gz"] = write_gz("math-gsm8k-train.jsonl.gz", "".join(lines("corpora/math-gsm8k-train.jsonl")[:2000]))
# Azure LLM inference traces (CC-BY-4.0): whole, byte for byte.
for name in ["azure-llm-conv-2023.csv", "azure-llm-code-2023.csv"]:
    with open(os.path.join(src, "traces", name), "rb") as f:
        sizes[name + ".gz"] = write_gz(name + ".gz", f.read().decode("utf-8"))
for k, v in sizes.items():
    print(f"{v:>9}  {k}")
print(f"{sum(sizes.values()):>9}  total")
