"""Cut the small trace slices in ``simulations/traces/`` from the full public traces (maintenance script).

The tests and the demo read only the slices in the repository; this script is how those slices were
made, so that anyone with the full traces can check or redo the cut. It is not a test and nothing runs
it automatically. The full traces are the unchanged public files described in
``simulations/traces/README.md``; ``--source`` names the folder that holds them (the layout:
``azure2023_AzureLLMInferenceTrace_code.csv``,
``mooncake_fast25_conversation_trace.jsonl``, ``servegen/language-m-large/chunk-*-trace.csv``,
``licenses/Apache-2.0.txt``).

Every slice is a byte-for-byte copy of a contiguous run of rows (or of whole files) of its source:

* ``azure-code-sample.csv``: the header and every row less than 30 minutes after the first row's
  ``TIMESTAMP`` (the file is in time order).
* ``mooncake-conversation-15min.jsonl``: every line with ``timestamp`` < 900,000 ms (the first 15
  minutes; the file is in time order).
* ``servegen-language/chunk-<client>-trace.csv``: the whole files of the 3 clients of ServeGen's
  ``language/m-large`` with the highest mean ``rate`` (column 2) over all 2,016 windows.
* ``LICENSE-Apache-2.0.txt``: ``licenses/Apache-2.0.txt`` (Mooncake and ServeGen are Apache-2.0).

Usage::

    python scripts/cut_trace_slices.py --source TRACES            # write the slices: rows, bytes, sha256
    python scripts/cut_trace_slices.py --source TRACES --check    # only compare with the repository's
    python scripts/cut_trace_slices.py --source TRACES --out /tmp/slices
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "simulations" / "traces"

AZURE_MINUTES = 30
MOONCAKE_MS = 15 * 60 * 1000
SERVEGEN_CLIENTS = 3


def azure_sample(source: Path) -> bytes:
    lines = (source / "azure2023_AzureLLMInferenceTrace_code.csv").read_bytes().splitlines(keepends=True)

    def stamp(line: bytes) -> datetime:
        return datetime.strptime(line.split(b",", 1)[0].decode()[:26], "%Y-%m-%d %H:%M:%S.%f")

    first = stamp(lines[1])
    rows = [line for line in lines[1:] if line.strip() and stamp(line) - first < timedelta(minutes=AZURE_MINUTES)]
    return lines[0] + b"".join(rows)


def mooncake_head(source: Path) -> bytes:
    lines = (source / "mooncake_fast25_conversation_trace.jsonl").read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if line.strip() and json.loads(line)["timestamp"] < MOONCAKE_MS)


def servegen_top_clients(source: Path) -> dict[str, bytes]:
    folder = source / "servegen" / "language-m-large"
    means: list[tuple[float, str]] = []
    for path in sorted(folder.glob("chunk-*-trace.csv")):
        rates = [float(line.split(",")[1] or 0) for line in path.read_text(encoding="utf-8").splitlines() if line]
        means.append((-sum(rates) / len(rates), path.name))
    return {name: (folder / name).read_bytes() for _, name in sorted(means)[:SERVEGEN_CLIENTS]}


def slices(source: Path) -> dict[str, bytes]:
    out = {
        "azure-code-sample.csv": azure_sample(source),
        "mooncake-conversation-15min.jsonl": mooncake_head(source),
        "LICENSE-Apache-2.0.txt": (source / "licenses" / "Apache-2.0.txt").read_bytes(),
    }
    for name, data in servegen_top_clients(source).items():
        out[f"servegen-language/{name}"] = data
    return out


def rows(name: str, data: bytes) -> int | str:
    if name.endswith(".txt"):
        return "-"
    n = sum(1 for line in data.splitlines() if line.strip())
    return n - 1 if name.startswith("azure") else n  # the Azure file has a header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="the folder holding the full public traces")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the slices go (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"the full traces are not at {args.source}: put them there or pass --source", file=sys.stderr)
        return 2
    wanted = slices(args.source)
    different = []
    print(f"{'file':48s} {'rows':>6s} {'bytes':>9s}  sha256 (first 16)")
    for name, data in wanted.items():
        target = args.out / name
        if args.check:
            if not target.is_file() or target.read_bytes() != data:
                different.append(name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        print(f"{name:48s} {rows(name, data)!s:>6s} {len(data):9,d}  {hashlib.sha256(data).hexdigest()[:16]}")
    print(f"total {sum(len(d) for d in wanted.values()):,} bytes")
    if different:
        print(f"differ from the cut: {', '.join(different)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
