"""`reuseport-check merge DIR...`: the results dirs of several matrix runs (the shards of
`matrix --shard K/N`, on several machines) put back together as one machine would have
written them.

    /usr/bin/python3 -m ci.matrix.merge DIR... --results-dir OUT --junit PATH --events PATH

Each DIR is a --results-dir of `matrix`: <release>/results.json (schema "results"),
junit.xml, and the `matrix --json` document if it was written into DIR (any DIR/*.json of
schema reuseport-check/matrix/1; it names the shard and the whole plan, and holds the
ERROR records of a kernel that never ran). Written: OUT/<release>/results.json (the shards'
records merged by case x variant x repeat, `runs` naming which shard's run wrote each, and
merged into a file already there as the driver does), one JUnit, and the matrix driver's
events (plan, kernel, record) for cli/merge.cc, which prints the table and writes --json
from them with the code `matrix` uses.

The same record in two inputs with different verdicts is an error (exit 2), never picked:
shards of one plan never overlap, so it means results of different runs were mixed.
Exit 1 when a shard of the plan is missing or the JUnit holds a failure or error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ci.matrix.common import DriverError, _locked, write_json_durably
from ci.matrix.results import _read_old, _run_entry, _sorted_records, record_ref

MATRIX_SCHEMA = "reuseport-check/matrix/1"


class MergeError(DriverError):
    """Inputs that cannot be merged: said in one line, exit 2."""


@dataclasses.dataclass
class Input:
    path: Path
    results: dict[str, tuple[Path, dict]]  # release -> (file, results document)
    junit: Path | None
    matrix: dict | None  # the `matrix --json` document
    matrix_path: Path | None = None


def _schema_errors(doc, name: str) -> list[str]:
    from results import schemas  # jsonschema is needed only here
    return schemas.errors(doc, name)


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MergeError(f"{path}: not readable as JSON ({e})") from None


def read_input(path: Path) -> Input:
    if not path.is_dir():
        raise MergeError(f"{path}: no such directory")
    results = {}
    for f in sorted(path.glob("*/results.json")):
        doc = _load(f)
        if errs := _schema_errors(doc, "results"):
            raise MergeError(f"{f}: not a matrix results file: {errs[0]}")
        if doc["kernel"] != f.parent.name:
            raise MergeError(f"{f}: holds kernel {doc['kernel']}, not {f.parent.name}")
        results[doc["kernel"]] = (f, doc)
    matrix = matrix_path = None
    for f in sorted(path.glob("*.json")):
        doc = _load(f)
        if not isinstance(doc, dict) or doc.get("schema") != MATRIX_SCHEMA:
            continue
        if errs := _schema_errors(doc, "matrix"):
            raise MergeError(f"{f}: not a matrix --json document: {errs[0]}")
        if matrix is not None:
            raise MergeError(f"{path}: two matrix --json documents ({matrix_path.name}, "
                             f"{f.name}): give each run its own directory")
        matrix, matrix_path = doc, f
    junit = path / "junit.xml" if (path / "junit.xml").is_file() else None
    if not results and junit is None and matrix is None:
        raise MergeError(f"{path}: no results (no <release>/results.json, junit.xml or "
                         "matrix --json document): not a --results-dir of `matrix`")
    return Input(path, results, junit, matrix, matrix_path)


# ---------------------------------------------------------------------------------------
# results/<release>/results.json


def _finished(doc: dict) -> str:
    return doc.get("finished_at") or ""


def merge_results(inputs: list[tuple[str, dict]], old: dict | None = None,
                  note=lambda m: None) -> dict:
    """One release's results documents from several inputs ((label, document), each of
    schema "results") as one document; `old` is the file already at the destination.

    The inputs' records are merged by case x variant x repeat; the same key with two
    verdicts is a MergeError. The merged records replace old's of the same key and old's
    others stay, as the driver's write_results does for one run. `runs` names each record
    once: the inputs' own runs (a file without `runs` is one run), oldest first.
    """
    release = inputs[0][1]["kernel"]
    order = sorted(range(len(inputs)), key=lambda i: _finished(inputs[i][1]))
    kept: dict[str, tuple[dict, int]] = {}
    for i in order:  # newest last: of two equal records, the newer run's is kept
        label, doc = inputs[i]
        for r in doc["records"]:
            ref = record_ref(r)
            if ref in kept and kept[ref][0]["verdict"] != r["verdict"]:
                other = inputs[kept[ref][1]][0]
                raise MergeError(f"kernel {release}: {ref} is {kept[ref][0]['verdict']} in "
                                 f"{other} but {r['verdict']} in {label}: these are not "
                                 "shards of one run")
            kept[ref] = (r, i)

    def entries(doc: dict, refs: set[str]) -> list[dict]:
        runs = doc.get("runs") or [_run_entry(doc, doc["matrix"], doc["records"])]
        out = []
        for entry in runs:
            names = [ref for ref in entry["records"] if ref in refs]
            if names:
                out.append({**entry, "records": names})
        return out

    records, runs = [], []
    if old is not None and old.get("kernel") != release:
        note(f"the file there is of kernel {old.get('kernel')!r}, not {release}: its "
             f"{len(old['records'])} record(s) are not kept")
    elif old is not None:
        still = {record_ref(r) for r in old["records"] if r.get("kernel") == release} - set(kept)
        records += [r for r in old["records"] if record_ref(r) in still]
        runs += entries(old, still)
    shard_runs = []
    for i in order:
        shard_runs += entries(inputs[i][1], {ref for ref, (_, j) in kept.items() if j == i})
    runs += sorted(shard_runs, key=lambda e: (e.get("finished_at") or "", e.get("started_at") or ""))
    newest = dict(inputs[order[-1]][1])
    newest["records"] = _sorted_records(records + [r for r, _ in kept.values()])
    newest["runs"] = runs
    return newest


def write_merged_results(out_dir: Path, release: str, inputs: list[tuple[str, dict]]) -> Path:
    dest = out_dir / release / "results.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / ".results.json.lock"):  # the driver's lock
        old, why = _read_old(dest)
        if why:
            raise MergeError(f"{dest}: {why}; move it away or choose another --results-dir")
        doc = merge_results(inputs, old, note=lambda m: warn(f"{dest}: {m}"))
        if errs := _schema_errors(doc, "results"):  # a bug here, never a half-right file
            raise MergeError(f"{dest}: the merged document breaks the schema: {errs[0]}")
        write_json_durably(dest, doc)
    return dest


# ---------------------------------------------------------------------------------------
# The table's records: kernel name x case/variant, from the matrix --json documents, or
# from the results files of a dir that has none.


@dataclasses.dataclass
class Kernel:
    name: str
    release: str = ""
    error: str = ""
    log: str = ""
    where: str = ""  # the input that said so


def _records_by_name(inp: Input) -> tuple[list[Kernel], list[tuple[str, dict]]]:
    """The kernels of one input and its records as (kernel name, record)."""
    if inp.matrix is not None:
        kernels = [Kernel(k["name"], k.get("release", ""), k.get("error", ""),
                          where=str(inp.matrix_path)) for k in inp.matrix["kernels"]]
        # A record names its kernel by release (by name when the kernel never booted).
        names: dict[str, str] = {}
        for k in kernels:
            for key in {k.name, k.release} - {""}:
                if names.setdefault(key, k.name) != k.name:
                    raise MergeError(f"{inp.matrix_path}: kernels {names[key]} and {k.name} "
                                     f"share release {key}: their records cannot be told apart")
        out = []
        for r in inp.matrix["records"]:
            if r["kernel"] not in names:
                raise MergeError(f"{inp.matrix_path}: a record of kernel {r['kernel']}, "
                                 "which the document does not list")
            out.append((names[r["kernel"]], r))
    else:
        kernels, out = [], []
        for release, (f, doc) in inp.results.items():
            kernels.append(Kernel(doc["matrix"]["kernel"], release, where=str(f)))
            out += [(doc["matrix"]["kernel"], r) for r in doc["records"]]
    for k in kernels:
        if k.error and (inp.path / "runs" / k.name).is_dir():
            k.log = str(inp.path / "runs" / k.name)
    return kernels, out


def plan_of(inputs: list[Input]) -> tuple[list[str], list[str], list[int], int]:
    """(kernels, variants, missing shard indices, shard count) of the whole run: the plan
    the shards' documents carry, or (unsharded inputs) the union in order of appearance."""
    shards = [i.matrix.get("shard") for i in inputs if i.matrix is not None]
    if shards and all(shards) and len(shards) == len(inputs):
        first = shards[0]
        for inp, s in zip(inputs, shards):
            if (s["count"], s["kernels"], s["variants"]) != \
                    (first["count"], first["kernels"], first["variants"]):
                raise MergeError(f"{inp.matrix_path}: shard {s['index']}/{s['count']} is of "
                                 f"another plan than {inputs[0].matrix_path} (shard "
                                 f"{first['index']}/{first['count']}): other kernels, cases "
                                 "or shard count")
        have = {s["index"] for s in shards}
        missing = [k for k in range(1, first["count"] + 1) if k not in have]
        return list(first["kernels"]), list(first["variants"]), missing, first["count"]
    kernels, variants = {}, {}
    for inp in inputs:
        ks, recs = _records_by_name(inp)
        kernels.update((k.name, None) for k in ks)
        variants.update((f"{r['case']}/{r['variant']}", None) for _, r in recs)
    return list(kernels), list(variants), [], 0


def table_records(inputs: list[Input]) -> tuple[dict[str, Kernel], dict[tuple, dict]]:
    """Every kernel (name -> release, error) and record ((name, case/variant, repeat) ->
    record) of the inputs; two inputs that disagree are a MergeError."""
    kernels: dict[str, Kernel] = {}
    records: dict[tuple, tuple[dict, Path]] = {}
    for inp in inputs:
        ks, recs = _records_by_name(inp)
        for k in ks:
            seen = kernels.setdefault(k.name, k)
            if seen is k:
                continue
            if k.release and seen.release and k.release != seen.release:
                raise MergeError(f"kernel {k.name} is release {seen.release} in {seen.where} "
                                 f"but {k.release} in {k.where}: the shards ran on different "
                                 "kernels")
            seen.release = seen.release or k.release
            if k.error:  # a kernel split over shards fails in each shard on its own
                seen.error = f"{seen.error}; {k.error}" if seen.error else k.error
                seen.log = seen.log or k.log
        for name, r in recs:
            key = (name, f"{r['case']}/{r['variant']}", r.get("repeat", 0))
            if key in records and records[key][0]["verdict"] != r["verdict"]:
                raise MergeError(f"kernel {name}: {key[1]} #{key[2]} is "
                                 f"{records[key][0]['verdict']} in {records[key][1]} but "
                                 f"{r['verdict']} in {inp.path}: these are not shards of one run")
            records[key] = (r, inp.path)
    return kernels, {k: r for k, (r, _) in records.items()}


# ---------------------------------------------------------------------------------------
# JUnit


def merge_junit(inputs: list[Input]):
    """One testsuite of every input's testcases, and its failures + errors. The same
    item twice with different outcomes is a MergeError; twice alike is kept once."""
    from junitparser import JUnitXml, TestSuite
    from results.junit import _outcome
    suite = TestSuite("pytest")
    seen: dict[str, tuple[str, Path]] = {}
    stamps, hosts = [], []
    for inp in inputs:
        if inp.junit is None:
            continue
        try:
            xml = JUnitXml.fromfile(str(inp.junit))
        except Exception as e:  # junitparser raises lxml's or ElementTree's own errors
            raise MergeError(f"{inp.junit}: not a JUnit XML file ({e})") from None
        for s in [xml] if isinstance(xml, TestSuite) else list(xml):
            stamps += [s.timestamp] if s.timestamp else []
            hosts += [s.hostname] if s.hostname and s.hostname not in hosts else []
            for tc in s:
                # "@kernel-5.10": pytest-xdist's group suffix, absent from a -j 1 run.
                key = f"{tc.classname}::{tc.name.split('@')[0]}"
                outcome = _outcome(tc).outcome
                if key in seen:
                    if seen[key][0] != outcome:
                        raise MergeError(f"{key} is {seen[key][0]} in {seen[key][1]} but "
                                         f"{outcome} in {inp.junit}")
                    continue
                seen[key] = (outcome, inp.junit)
                suite.add_testcase(tc)
    suite.update_statistics()
    if stamps:
        suite.timestamp = min(stamps)
    if hosts:
        suite.hostname = ",".join(hosts)
    out = JUnitXml()
    out.add_testsuite(suite)
    out.update_statistics()
    return out, sum(1 for o, _ in seen.values() if o in ("failure", "error"))


# ---------------------------------------------------------------------------------------


def warn(msg: str) -> None:
    print(f"reuseport-check: merge: {msg}", file=sys.stderr)


def merge(dirs: list[Path], out: Path, junit: Path, events: Path) -> int:
    inputs = [read_input(d) for d in dirs]
    kernels, variants, missing, count = plan_of(inputs)
    by_name, records = table_records(inputs)
    for name in by_name:
        if name not in kernels:
            kernels.append(name)
    for _, cv, _ in records:
        if cv not in variants:
            variants.append(cv)
    by_release: dict[str, list[tuple[str, dict]]] = {}
    for inp in inputs:
        for release, (f, doc) in inp.results.items():
            by_release.setdefault(release, []).append((str(f), doc))
    # Every input is read and checked before the first file is written.
    for docs in by_release.values():
        merge_results(docs)
    junit_xml, failing_junit = merge_junit(inputs)
    written = [write_merged_results(out, release, docs) for release, docs in by_release.items()]
    tmp = junit.with_name(f".{junit.name}.{os.getpid()}")
    junit_xml.write(str(tmp))
    os.replace(tmp, junit)

    lines = [{"ev": "plan", "kernels": kernels, "variants": variants}]
    for name in kernels:
        k = by_name.get(name)
        if k is not None:
            lines.append({"ev": "kernel", "kernel": name, "state": "error" if k.error else "done",
                          "release": k.release, "error": k.error, "console_log": k.log})
    for (name, _, _), r in records.items():
        lines.append({"ev": "record", "kernel": name, "record": r})
    lines.append({"ev": "merged", "complete": not missing, "inputs": [str(d) for d in dirs],
                  "results": [str(p) for p in written], "junit": str(junit)})
    events.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))

    print(f"merged {len(dirs)} dir(s): {len(kernels)} kernel(s), {len(records)} record(s); "
          f"results: {', '.join(map(str, written)) or 'none'}; junit: {junit}")
    if missing:
        warn(f"shard(s) {', '.join(map(str, missing))} of {count} missing: their kernel x "
             "case/variant items have no verdict ('-')")
    return 1 if missing or failing_junit else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m ci.matrix.merge")
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--results-dir", required=True, type=Path)
    ap.add_argument("--junit", required=True, type=Path)
    ap.add_argument("--events", required=True, type=Path)
    a = ap.parse_args(argv)
    try:
        return merge(a.dirs, a.results_dir, a.junit, a.events)
    except DriverError as e:
        print(f"reuseport-check: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
