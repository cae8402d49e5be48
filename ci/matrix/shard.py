"""`--shard K/N`: which kernel x case/variant items of the matrix one machine runs.

Every machine computes the same split from the same kernel list and catalogue, whatever
the order of its command line: the items are sorted, kernel first, then case/variant, and
shard K of N takes the K-th of N contiguous runs of that list, each T/N items (+-1) of T.

Contiguous runs rather than a hash or round robin because a kernel costs a boot (and, on
a fresh CI runner, a download of its package) in every shard that holds any of its items:
round robin puts every kernel in every shard (kernels x N boots); contiguous runs boot each
kernel once, plus at most one extra boot per cut that falls inside a kernel (at most
kernels + N - 1 boots). The six kernels of ci/kernels.toml in 3 shards are 2 kernels per
shard, each booted once. Shards are balanced by item count; a guest item costs more than
one on the host ("running"), which this does not weigh.
"""

from __future__ import annotations

import re

from ci.matrix.common import DriverError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(spec: str) -> tuple[int, int]:
    """"2/3" -> (2, 3); anything but 1 <= K <= N is a DriverError (a usage error)."""
    m = _SPEC.match(spec or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise DriverError(f"--shard {spec!r}: expected K/N with 1 <= K <= N, e.g. 1/3")
    return int(m.group(1)), int(m.group(2))


def shard_items(kernels: list[str], variants: list[tuple[str, str]], index: int,
                count: int) -> dict[str, list[tuple[str, str]]]:
    """kernel -> the (case, variant) pairs shard index/count holds, in sorted order; a
    kernel of which it holds nothing is absent (it is not booted)."""
    if not 1 <= index <= count:
        raise DriverError(f"--shard {index}/{count}: expected K/N with 1 <= K <= N")
    items = [(k, cv) for k in sorted(set(kernels)) for cv in sorted(set(variants))]
    lo, hi = (index - 1) * len(items) // count, index * len(items) // count
    out: dict[str, list[tuple[str, str]]] = {}
    for kernel, cv in items[lo:hi]:
        out.setdefault(kernel, []).append(cv)
    return out
