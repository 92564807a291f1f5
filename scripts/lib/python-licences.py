"""Prints, as JSON, the licence metadata and licence files of every distribution installed in
the Python environment that runs it (scripts/lib/licences.ts runs it with a venv's python)."""
import importlib.metadata as md
import json
import os
import re
import sys

LICENCE_FILE = re.compile(r"^(un)?licen[cs]e|^copying|[-_.]licen[cs]e(\.[a-z]+)?$", re.I)
SOURCE_FILE = re.compile(r"\.(go|[cm]?[jt]s|py[ci]?|json|c|h|rs|java|rb|sh)$", re.I)

out = []
for dist in md.distributions():
    meta = dist.metadata
    files = []
    seen = set()
    for f in dist.files or []:
        name = os.path.basename(str(f))
        if not LICENCE_FILE.search(name) or SOURCE_FILE.search(name):
            continue
        path = str(dist.locate_file(f))
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, encoding="utf-8", errors="replace") as fh:
            files.append({"name": str(f), "text": fh.read(200_000)})
    out.append({
        "name": meta["Name"],
        "version": meta["Version"],
        "licenseExpression": meta.get("License-Expression"),
        "license": meta.get("License"),
        "classifiers": meta.get_all("Classifier") or [],
        "files": files,
    })
out.sort(key=lambda d: d["name"].lower())
json.dump(out, sys.stdout)
