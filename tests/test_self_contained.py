"""Nothing the tests, the package or the demo read lies outside the repository.

A static scan of every file under ``tests/`` and ``autoscaler/``, of ``scripts/`` (the demo and its
helpers) and of the ``Makefile``. It reports ``file:line: why`` for

* a Python string literal (f-string parts and docstrings included) or, in other files, a line that is
  not a comment, naming the public traces beside the checkout or the machine's work directory: a
  parent step followed by the public traces folder's name, that name followed by its subfolder, or the work directory
  between two separators (see ``OUTSIDE`` for the exact patterns);
* a path that climbs above the repository root: ``Path(__file__)`` with ``.parent`` chains or
  ``.parents[N]``, nested ``os.path.dirname(__file__)``, ``/ ".."`` and ``os.path.join(.., "..")`` steps,
  ``Path.cwd()`` / ``os.getcwd()`` (the tests run from the root) and ``Path("..")``, followed through
  names bound to such paths (``ROOT = Path(__file__).resolve().parent.parent`` then ``ROOT.parent``);
* in shell and make files, ``"$(dirname "$0")"`` followed by more ``/..`` than the script's depth, and
  a bare ``cd ..``.

Allowed: nothing in ``tests/``, ``autoscaler/`` or the demo. ``scripts/cut_trace_slices.py`` (the
maintenance script that cuts the bundled slices from the full traces) and ``benchmarks/`` (which read
the full traces when they are there) are not scanned. The scanner itself is tested on examples,
including the line ``tests/test_forecast.py`` had before the traces were bundled.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("tests", "autoscaler", "scripts", "Makefile")
NOT_SCANNED = {"scripts/cut_trace_slices.py"}  # maintenance: reads the full traces to cut the slices
# the outside names are assembled at run time so that this file never names them itself
UP, SHARED, TRACES, WORK = "..", "sha" + "red", "tra" + "ces", "wo" + "rk"
OUTSIDE = re.compile(rf"\.\.[/\\]{SHARED}|{SHARED}[/\\]{TRACES}|[/\\]{WORK}[/\\]")
DIRNAME_0 = re.compile(r"""dirname\s+"?\$\{?0\}?"?\s*\)"?((?:/\.\.)+)""")
CD_UP = re.compile(r"(?:^|[\s;&|(])cd\s+\.\.(?:/|\s|;|\)|$)")
PATH_CALLS = {"Path", "pathlib.Path", "PurePath", "PosixPath", "str", "os.fspath",
              "os.path.abspath", "os.path.realpath", "os.path.normpath", "os.path.expanduser"}
KEEP_METHODS = {"resolve", "absolute", "expanduser"}
CWD_CALLS = {"Path.cwd", "pathlib.Path.cwd", "os.getcwd"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


class _Climbs:
    """Levels above a file's own directory that path expressions name (-1: the file; 0: its directory)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth  # how many directories the file's directory is below the repository root
        self.names: dict[str, int] = {}
        self.hits: set[int] = set()

    def _step(self, level: int, text: str, line: int) -> int:
        """Apply the components of a relative path string; record a hit when one climbs above the root."""
        for part in re.split(r"[/\\]", text):
            if part == "..":
                level += 1
                if level > self.depth:
                    self.hits.add(line)
            elif part not in ("", "."):
                level -= 1
        return level

    def level(self, node: ast.expr) -> int | None:
        line = getattr(node, "lineno", 0)
        result: int | None = None
        if isinstance(node, ast.Name):
            result = -1 if node.id == "__file__" else self.names.get(node.id)
        elif isinstance(node, ast.Attribute) and node.attr == "parent":
            base = self.level(node.value)
            result = None if base is None else base + 1
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "parents" and isinstance(node.slice, ast.Constant)
              and isinstance(node.slice.value, int)):
            base = self.level(node.value.value)
            result = None if base is None else base + node.slice.value + 1
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self.level(node.left)
            if base is not None and isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
                result = self._step(base, node.right.value, line)
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in CWD_CALLS:
                result = self.depth
            elif isinstance(node.func, ast.Attribute) and node.func.attr in KEEP_METHODS:
                result = self.level(node.func.value)
            elif name in PATH_CALLS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and name != "str":
                    if not first.value.startswith(("/", "~")):  # relative: to the working directory, the root
                        result = self._step(self.depth, first.value, line)
                else:
                    result = self.level(first)
            elif name == "os.path.dirname" and node.args:
                base = self.level(node.args[0])
                result = None if base is None else base + 1
            elif name == "os.path.join" and node.args:
                result = self.level(node.args[0])
                for arg in node.args[1:]:
                    if result is None or not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                        result = None
                        break
                    result = self._step(result, arg.value, line)
        if result is not None and result > self.depth:
            self.hits.add(line)
        return result


def scan_python(relpath: str, source: str) -> Iterator[tuple[int, str]]:
    """``(line, why)`` for each finding in one Python file at ``relpath`` (relative to the root)."""
    tree = ast.parse(source, filename=relpath)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            match = OUTSIDE.search(text)
            if match:
                yield node.lineno, f"string names a path outside the repository ({match.group(0)!r})"
    climbs = _Climbs(depth=len(Path(relpath).parent.parts))
    assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign) and n.value is not None]
    for _ in range(3):  # names bound to names bound to paths
        for node in assigns:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assert node.value is not None
            value = climbs.level(node.value)
            for target in targets:
                if isinstance(target, ast.Name) and value is not None:
                    climbs.names[target.id] = value
    for node in ast.walk(tree):
        if isinstance(node, ast.expr):
            climbs.level(node)
    for line in sorted(climbs.hits):
        yield line, "path climbs above the repository root"


def scan_text(relpath: str, text: str) -> Iterator[tuple[int, str]]:
    """``(line, why)`` for each finding in a shell script, Makefile or data file."""
    depth = len(Path(relpath).parent.parts)
    shell = relpath.endswith(".sh") or Path(relpath).name == "Makefile"
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#") and (shell or relpath.endswith((".yaml", ".yml"))):
            continue
        match = OUTSIDE.search(line)
        if match:
            yield number, f"names a path outside the repository ({match.group(0)!r})"
        if shell:
            up = DIRNAME_0.search(line)
            if up and up.group(1).count("..") > depth:
                yield number, "climbs above the repository root from the script's directory"
            if CD_UP.search(line):
                yield number, "cd .. leaves the repository root"


def scanned_files(root: Path) -> Iterator[Path]:
    for name in SCANNED:
        top = root / name
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in candidates:
            rel = path.relative_to(root)
            if (path.is_file() and rel.as_posix() not in NOT_SCANNED and "__pycache__" not in rel.parts
                    and not any(part.startswith(".") for part in rel.parts)):
                yield path


def scan(root: Path) -> list[str]:
    findings = []
    for path in scanned_files(root):
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        rel = path.relative_to(root).as_posix()
        text = data.decode("utf-8", errors="replace")
        found = scan_python(rel, text) if rel.endswith(".py") else scan_text(rel, text)
        findings += [f"{rel}:{line}: {why}" for line, why in found]
    return findings


def test_nothing_reads_outside_the_repository() -> None:
    files = list(scanned_files(ROOT))
    assert len(files) > 100 and ROOT / "tests" / "test_forecast.py" in files and ROOT / "Makefile" in files
    assert ROOT / "scripts" / "demo.sh" in files
    findings = scan(ROOT)
    assert not findings, "paths outside the repository (bundle the data under the repository instead):\n" + "\n".join(
        findings)


# -- the scanner catches what it should, and only that ----------------------------------------------------

BEFORE = (f'SERVEGEN = Path(__file__).resolve().parent.parent.parent / "{SHARED}" / "{TRACES}" / "servegen"'
          ' / "language-m-large"\n')


def _py(relpath: str, source: str) -> list[int]:
    return [line for line, _ in scan_python(relpath, source)]


def test_scanner_catches_the_line_test_forecast_had() -> None:
    source = "from pathlib import Path\n\nDAY = 86400.0\n" + BEFORE
    assert _py("tests/test_forecast.py", source) == [4]
    after = source.replace(f"parent.parent.parent / \"{SHARED}\" / \"{TRACES}\" / \"servegen\" / \"language-m-large\"",
                           "parent.parent / \"simulations\" / \"traces\" / \"servegen-language\"")
    assert after != source and _py("tests/test_forecast.py", after) == []


@pytest.mark.parametrize(("relpath", "source", "lines"), [
    ("tests/test_x.py", f'P = Path(__file__).resolve().parents[2] / "{SHARED}" / "{TRACES}"\n', [1]),
    ("tests/test_x.py", 'P = Path(__file__).resolve().parents[1] / "simulations"\n', []),
    ("tests/test_x.py", "ROOT = Path(__file__).resolve().parent.parent\nA = ROOT / 'x'\nB = ROOT.parent / 'y'\n", [3]),
    ("tests/test_x.py", "R = Path(__file__).parent.parent\nS = R\nT = S / '..' / 'y'\n", [3]),
    ("tests/test_x.py", "import os\nD = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))\n", [2]),
    ("tests/test_x.py", "import os\nD = os.path.join(os.path.dirname(__file__), '..', '..', 'x')\n", [2]),
    ("tests/test_x.py", "import os\nD = os.path.join(os.path.dirname(__file__), '..', 'x')\n", []),
    ("tests/conftest.py", "import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\n", []),
    ("autoscaler/sim/x.py", "P = Path(__file__).parents[2]\n", []),
    ("autoscaler/sim/x.py", "P = Path(__file__).parents[3] / 'x'\n", [1]),
    ("tests/test_x.py", "P = Path.cwd().parent / 'x'\n", [1]),
    ("tests/test_x.py", "P = Path('simulations/traces')\nQ = Path('x/../../y')\n", [2]),
    ("tests/test_x.py", f"open('/{WORK}/{SHARED}/data.csv')\n", [1]),
    ("tests/test_x.py", f"p = f'{{ROOT}}/{UP}/{SHARED}/x.jsonl'\n", [1]),
    ("tests/test_x.py", f'"""Reads {SHARED}/{TRACES} when present."""\n', [1]),
    ("tests/test_x.py", f"# a comment about {SHARED} {TRACES} is not a read\nx = 'network/{SHARED}'\n", []),
])
def test_scanner_on_python(relpath: str, source: str, lines: list[int]) -> None:
    assert _py(relpath, source) == lines


@pytest.mark.parametrize(("relpath", "text", "lines"), [
    ("scripts/demo.sh", 'cd "$(dirname "$0")/.."\n', []),
    ("scripts/demo.sh", 'cd "$(dirname "$0")/../.."\n', [1]),
    ("scripts/demo.sh", f"cat {UP}/{SHARED}/traces/x.csv\n", [1]),
    ("scripts/demo.sh", f"# see {UP}/{SHARED}/traces\necho ok\n", []),
    ("Makefile", "demo:\n\tcd .. && ls\n", [2]),
    ("Makefile", "test:\n\t.venv/bin/pytest tests/..x\n", []),
    ("tests/fixtures/x.json", f'{{"path": "/{WORK}/data"}}\n', [1]),
])
def test_scanner_on_other_files(relpath: str, text: str, lines: list[int]) -> None:
    assert [line for line, _ in scan_text(relpath, text)] == lines
