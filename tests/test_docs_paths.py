"""Every repository path a doc or a comment names exists (issue 15): docs cannot drift silently.

Scanned: the README, ``docs/``, every other Markdown file, the comments and docstrings of the package,
the tests, the benchmarks and the scripts, and the comments of the shipped YAML (policies, scenarios,
manifests, examples). A *path* is a word that starts with one of the repository's top-level folders
and a slash (``autoscaler/core/step.py``, ``docs/install.md``, ``simulations/baselines/``) or a Markdown
link target that is relative. Globs, placeholders (``<name>``, ``NAME``, ``...``) and paths under
folders the repository creates at run time (``out/``) are not paths to check.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in (
    "build", "out", "demo-out") and not p.name.endswith(".egg-info"))
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, TOP))})/[\w./*<>{{}}$-]*)")
LINK = re.compile(r"\]\(([^)#\s]+)")
PLACEHOLDER = re.compile(r"[<>*{}$]|\.\.\.|/[A-Z][A-Z_]+(?:/|$)")


def _texts() -> Iterator[tuple[Path, int, str]]:
    """(file, line, text) of every doc line and every comment or docstring line."""
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        hidden = any(part.startswith(".") for part in rel.parts) and rel.parts[0] != ".ci"
        if not path.is_file() or hidden or any(part in ("build", "out", "demo-out", "__pycache__")
                                               or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.suffix == ".md":
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield path, number, line
        elif path.suffix in (".yaml", ".yml", ".sh", ".toml", ".tpl") or path.name in ("Makefile", "Dockerfile", "run"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "#" in line or "/*" in line:  # YAML, shell, TOML, make comments; Helm's {{/* */}}
                    yield path, number, line[min(i for i in (line.find("#"), line.find("/*")) if i >= 0):]
        elif path.suffix == ".py":
            source = path.read_text(encoding="utf-8")
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                if token.type == tokenize.COMMENT or (token.type == tokenize.STRING and token.string.startswith(
                        ('"""', "'''", 'r"""'))):
                    for offset, line in enumerate(token.string.splitlines()):
                        yield path, token.start[0] + offset, line


# kubectl's resource/name (`kubectl logs deploy/inference-autoscaler`) looks like a path and is not one
KUBECTL_RESOURCE = re.compile(r"kubectl\b.*\b(deploy|pod|svc|sts)/")


def _named(path: Path, line: str) -> Iterator[str]:
    found: list[str] = []
    for match in PATH.finditer(line):
        if KUBECTL_RESOURCE.search(line[: match.end()]) and match.group(1).split("/")[0] == "deploy" and (
                "/" not in match.group(1).rstrip("/")[len("deploy/"):]):
            continue
        found.append(match.group(1))
    if path.suffix == ".md":
        for match in LINK.finditer(line):
            target = match.group(1)
            if "://" not in target and not target.startswith("mailto:"):
                resolved = (path.parent / target).resolve()
                found.append(str(resolved.relative_to(ROOT)) if ROOT in resolved.parents else target)
    yield from dict.fromkeys(found)


def missing_paths() -> list[str]:
    out = []
    for path, number, line in _texts():
        for named in _named(path, line):
            named = named.rstrip(".,:;'\"`)")
            if not named or PLACEHOLDER.search(named) or named.startswith("out/"):
                continue
            if not (ROOT / named).exists():
                out.append(f"{path.relative_to(ROOT)}:{number}: {named}")
    return out


def test_every_named_path_exists() -> None:
    missing = missing_paths()
    assert not missing, "paths named in docs or comments that do not exist:\n" + "\n".join(missing)


def test_the_scanner_finds_a_missing_path(tmp_path: Path) -> None:
    assert list(_named(ROOT / "x.py", "see tests/test_hpa_golden.py and autoscaler/core/")) == [
        "tests/test_hpa_golden.py", "autoscaler/core/"]
    assert not (ROOT / "tests/test_hpa_golden.py").exists()
    assert list(_named(ROOT / "README.md", "[install](docs/install.md)")) == ["docs/install.md"]


SERIES = re.compile(r"\binference_autoscaler_[a-z_]+[a-z]")


def test_every_series_the_docs_dashboard_and_alerts_name_is_exported() -> None:
    """The service's own series named in the docs, the Grafana dashboard and the alert rules exist
    (a counter also as ``_total``, a histogram as ``_bucket``/``_sum``/``_count``)."""
    from autoscaler.service.telemetry import Telemetry

    exported: set[str] = set()
    for family in Telemetry().registry.collect():
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
        if family.type == "counter":
            exported.add(f"{family.name}_total")
        if family.type == "histogram":
            exported.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "deploy").rglob("*.json")),
             *sorted((ROOT / "deploy" / "prometheus").glob("*.yaml"))]
    named = {(f.relative_to(ROOT), m) for f in files for m in SERIES.findall(f.read_text(encoding="utf-8"))}
    assert len(named) > 10
    unknown = sorted(f"{f}: {name}" for f, name in named if name not in exported)
    assert not unknown, "series named but not exported:\n" + "\n".join(unknown)
