"""One kernel's run (KernelRun), its records back from the output, and the per-release
results files they are merged into.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from ci.matrix.common import BEGIN, END, PROGRESS_RE, _locked, write_json_durably


@dataclasses.dataclass
class KernelRun:
    name: str  # as in ci/kernels.toml
    release: str | None  # uname -r
    ok: bool  # the catalogue ran to its end and its JSON came back
    error: str = ""
    doc: dict | None = None  # the `run --json` document
    records: list[dict] = dataclasses.field(default_factory=list)
    console_log: Path | None = None
    output_log: Path | None = None
    accel: str | None = None
    package: str | None = None
    version: str | None = None
    boot_time: float | None = None  # qemu start -> kernel up
    first_result_time: float | None = None  # qemu start (or process start) -> 1st record
    duration: float = 0.0
    progress: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    vcpus: int | None = None  # the guest's; None on the host
    tcg_thread: str | None = None
    timeout_scale: int | None = None  # RP_TIMEOUT_SCALE the guest measured (speed.py)

    def record(self, case: str, variant: str) -> dict | None:
        for r in self.records:
            if r.get("case") == case and r.get("variant") == variant:
                return r
        return None

    def where(self) -> str:
        return f"console log: {self.console_log}" if self.console_log else \
            f"output: {self.output_log}"


def between_markers(output: str, begin_marker: str = BEGIN, end_marker: str = END):
    """The JSON document between the last begin marker of the guest's output and its end."""
    begin = output.rfind(begin_marker)
    if begin < 0:
        raise ValueError("no results in the output (marker missing)")
    end = output.find(end_marker, begin)
    if end < 0:
        raise ValueError("the results are cut off (end marker missing)")
    text = output[begin + len(begin_marker):end]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the results are not valid JSON: {e}") from None
    return doc


def parse_results(output: str) -> dict:
    """The `run --json` document between the markers of the guest's output."""
    doc = between_markers(output)
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ValueError("the results have no records list")
    if doc.get("complete") is False:  # written while `run` ran, which then died
        raise ValueError("the run did not complete")
    return doc


def parse_progress(output: str) -> list[tuple[str, str, str]]:
    """(verdict, case, variant) of every progress line, for a run that ended early."""
    return [(m.group(1), m.group(4), m.group(5)) for m in PROGRESS_RE.finditer(output)]

def record_ref(r: dict) -> str:
    """A record's key in a results file, as `run` prints it: "case/variant #repeat"."""
    return f"{r.get('case', '')}/{r.get('variant', '')} #{r.get('repeat', 0)}"


def _sorted_records(records: Iterable[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r.get("case", ""), r.get("variant", ""),
                                          r.get("repeat", 0)))


def _run_entry(doc: dict, matrix: dict, records: Iterable[dict]) -> dict:
    """One item of `runs`: the run that wrote these records and when."""
    return {"command": list(doc.get("command") or ["?"]),
            "started_at": doc.get("started_at"), "finished_at": doc.get("finished_at"),
            "expectations": doc.get("expectations", ""), "matrix": matrix,
            "records": [record_ref(r) for r in _sorted_records(records)]}


def results_document(run: KernelRun, old: dict | None = None) -> tuple[dict, list[str]]:
    """What results/<release>/results.json holds after this run, and notes on what of `old`
    (the file as it was) was not kept.

    A narrower run (`matrix --case GLOB`) must not cost the records of the variants it did
    not run: the run's records replace those of the same case x variant x repeat, the others
    stay, and `runs` says which run wrote which record. The top-level fields are the newest
    run's. Only records of the same kernel release are kept: the file is per release, and a
    record of another kernel in it (a copied file) would be judged as this kernel's.
    """
    matrix = {"kernel": run.name, "package": run.package, "version": run.version}
    if run.vcpus is not None:  # a guest: how it ran
        matrix.update(accel=run.accel, vcpus=run.vcpus, tcg_thread=run.tcg_thread,
                      timeout_scale=run.timeout_scale)
    doc = dict(run.doc or {})
    doc.pop("runs", None)
    notes: list[str] = []
    fresh = {record_ref(r) for r in run.records}
    kept: list[dict] = []
    runs: list[dict] = []
    if old is not None:
        if old.get("kernel") != run.release:
            notes.append(f"the old file is of kernel {old.get('kernel')!r}, not {run.release}: "
                         f"its {len(old.get('records') or [])} record(s) are not kept")
        else:
            other = [r for r in old["records"] if r.get("kernel") != run.release]
            if other:
                notes.append(f"{len(other)} old record(s) of another kernel "
                             f"({', '.join(sorted({str(r.get('kernel')) for r in other}))}) "
                             "are not kept")
            kept = [r for r in old["records"]
                    if r.get("kernel") == run.release and record_ref(r) not in fresh]
            # A file written before `runs` existed was one run: its top-level fields say which.
            old_runs = old.get("runs") or [_run_entry(old, old.get("matrix") or matrix,
                                                           old["records"])]
            still = {record_ref(r) for r in kept}
            for entry in old_runs:
                refs = [ref for ref in entry.get("records", []) if ref in still]
                if refs:
                    runs.append({**entry, "records": refs})
    doc["records"] = _sorted_records(kept + list(run.records))
    doc["matrix"] = matrix
    doc["runs"] = runs + [_run_entry(doc, matrix, run.records)]
    return doc, notes


def _read_old(dest: Path) -> tuple[dict | None, str]:
    """The results file as it is, or None and why it cannot be merged with."""
    try:
        old = json.loads(dest.read_text())
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as e:
        return None, f"not readable as JSON ({e})"
    if not isinstance(old, dict) or not isinstance(old.get("records"), list) or \
            not all(isinstance(r, dict) for r in old["records"]):
        return None, "not a results document (no records list)"
    return old, ""


def write_results(results_dir: Path, run: KernelRun,
                  log: Callable[[str], None] = lambda m: None) -> Path:
    """Merge the run's records into results/<release>/results.json (results_document).

    A file that cannot be read is moved aside, never silently replaced.
    """
    dest = results_dir / run.release / "results.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Two matrix commands on one kernel must not both read the old file and lose each
    # other's records.
    with _locked(dest.parent / ".results.json.lock"):
        old, why = _read_old(dest)
        if why:
            aside = dest.with_name(f"results.json.unreadable-{int(time.time())}")
            os.replace(dest, aside)
            log(f"{dest}: {why}; moved to {aside.name}")
        doc, notes = results_document(run, old)
        for note in notes:
            log(f"{dest}: {note}")
        write_json_durably(dest, doc)
    return dest


def error_record(run: KernelRun, case: str, variant: str, reason: str) -> dict:
    """A record for a variant whose kernel never produced one (infrastructure ERROR)."""
    rec = {"case": case, "variant": variant, "kernel": run.release or run.name,
           "repeat": 0, "expected": {}, "observed": {}, "verdict": "ERROR",
           "reason": reason, "source": "", "duration_s": 0.0}
    tail = console_tail(run.console_log)
    if tail:
        rec["console_tail"] = tail
    return rec


CONSOLE_TAIL_LINES = 20


def console_tail(console_log: Path | None) -> str:
    """The last lines of a guest's console (ttyS0): what the kernel said before it ended."""
    if console_log is None:
        return ""
    try:
        lines = Path(console_log).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line.rstrip() for line in lines[-CONSOLE_TAIL_LINES:])


def add_console_tail(run: KernelRun) -> None:
    """A guest's ERROR records (a variant that timed out or died in it) carry the console's
    tail: a hung task, an Oops or a soft lockup there is the likeliest why."""
    if run.console_log is None:
        return
    tail = None
    for r in run.records:
        if r.get("verdict") == "ERROR" and "console_tail" not in r:
            tail = console_tail(run.console_log) if tail is None else tail
            if tail:
                r["console_tail"] = tail

