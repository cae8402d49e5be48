"""JSON Schemas (Draft 2020-12) of every document reuseport-check writes, and validate().

    from results.schemas import validate
    validate(json.loads(path.read_text()), "run")   # raises jsonschema.ValidationError

NAMES maps a schema's name to the document it describes; `<name>.schema.json` is the file.
The schemas refer to each other by file name ("run-record.schema.json"), resolved here
from this directory and never fetched.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

NAMES = {
    "run-record": "one record: an item of records[], one line of the JSON Lines stream of `run`",
    "run": "`reuseport-check run --json PATH` (reuseport-check/results/1)",
    "results": "results/<release>/results.json of the kernel matrix (the run document + matrix)",
    "watch": "`reuseport-check watch --json PATH` (reuseport-check/watch/1)",
    "deploy": "`reuseport-check deploy --json PATH` (reuseport-check/deploy/1)",
    "deploy-udp": "`reuseport-check deploy --udp --json PATH` (reuseport-check/deploy-udp/1)",
    "deploy-kernels": "`reuseport-check deploy --kernels LIST --json PATH` (reuseport-check/deploy-kernels/1)",
    "group": "`reuseport-check group --json PATH` (reuseport-check/group/1)",
    "matrix": "`reuseport-check matrix --json PATH` (reuseport-check/matrix/1)",
    "report-data": "results/report/data/<release>.json of `reuseport-check report` "
                   "(reuseport-check/report-runs/1)",
    "servers": "results/servers/servers.json of results/servers/measure.py (reuseport-check/servers/1)",
}


@functools.cache
def schema(name: str) -> dict:
    if name not in NAMES:
        raise KeyError(f"no schema '{name}'; known: {', '.join(NAMES)}")
    return json.loads((HERE / f"{name}.schema.json").read_text())


@functools.cache
def validator(name: str):
    import jsonschema
    store = {schema(n)["$id"]: schema(n) for n in NAMES}
    resolver = jsonschema.RefResolver.from_schema(schema(name), store=store)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema(name))
    return cls(schema(name), resolver=resolver)


def errors(doc, name: str) -> list[str]:
    """Every way doc breaks the schema, one line each ("at records/3/verdict: ...")."""
    out = []
    for e in sorted(validator(name).iter_errors(doc), key=lambda e: list(map(str, e.path))):
        where = "/".join(map(str, e.absolute_path)) or "(top)"
        out.append(f"at {where}: {e.message}")
    return out


def validate(doc, name: str) -> None:
    """Raises jsonschema.ValidationError (the most relevant error) when doc breaks the schema."""
    import jsonschema
    error = jsonschema.exceptions.best_match(validator(name).iter_errors(doc))
    if error is not None:
        raise error
