"""Environment corpus: real environments through environment sync, end to end.

Each environment is a real virtual environment, created with uv from PyPI
in a temporary directory (the project's own dev venv is used as it is),
then, for each platform:

* **resolve**: its snapshot resolved for ``x86_64-manylinux_2_28`` /
  ``aarch64-manylinux_2_28`` and this interpreter's exact Python release
  (the lock cache is empty, so uv really resolves);
* **build**: installed into layers, tarred and pushed, with the base image,
  to the emulated ECR (a local CNCF registry behind ECR-style auth;
  ``starburst.testing.emulated_aws(registry=True, isolate=True)``);
* **wheel tags**: the pushed image is pulled back and every installed
  wheel's ``WHEEL`` file is checked to carry a tag for that platform
  (``any`` or the platform's machine, never the other one);
* **imports** (x86_64 only: this machine cannot run arm64 code): a Fargate
  session with ``env="auto"`` runs one task from the pushed image (the
  tag exists, nothing is rebuilt), isolated from the host's site-packages,
  that imports each top-level module of the environment.

The base image is the synthetic ``python:3.X.Y-slim`` of the emulator
(a few KiB): "image MiB" is the compressed size of starburst's layers
(the environment and starburst itself), what a cold push sends.

The CPU torch environment takes ``torch==2.13.0+cpu`` from a local wheel
directory (``--torch-wheels``, ``/opt/wheels`` on this project's machines):
PyPI's Linux x86_64 torch is a CUDA build of several GB. For arm64 there is
no such wheel here, so torch on arm64 is resolved only (for the public
``2.13.0`` release, metadata only) and not built; the table says why.

Usage (from the repository root; needs ``apt-get install docker-registry``
and PyPI)::

    nice -n 10 .venv/bin/python bench/env_corpus.py [--env web --env editable]
        [--platform x86_64] [--json]
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report as report  # the bench directory is not a package

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
REGION = "us-east-1"
PLATFORMS = ("x86_64", "arm64")
# The machine name each platform's wheel tags carry, and the other one's.
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
# A task imports a few big packages (torch, pandas) from an unpacked image
# on a loaded 2-core machine: allow minutes, not seconds.
_TASK_TIMEOUT_S = 600.0
# The CPU torch release whose wheel lies on this project's machines.
_TORCH = "2.13.0"
_NOT_RUNNABLE = "n/a (arm64 not runnable here)"


@dataclass(frozen=True)
class Env:
    """One environment of the corpus.

    Attributes:
        name: short name (``--env``).
        packages: what ``uv pip install`` gets (besides starburst's own
            runtime dependencies, which every worker image needs).
        imports: top-level modules the task imports.
        venv: an existing virtual environment used as it is (not created).
        editable: install a small local project in editable mode as well.
        find_links: extra wheel directories for uv (install and resolve).
    """

    name: str
    packages: tuple[str, ...]
    imports: tuple[str, ...]
    venv: Path | None = None
    editable: bool = False
    find_links: tuple[str, ...] = ()


def corpus(torch_wheels: Path) -> list[Env]:
    """The environments, smallest first (the test command runs the first two)."""
    torch_pin = f"torch=={_TORCH}+cpu"
    return [
        Env("editable", ("attrs",), ("corpus_local", "attrs"), editable=True),
        Env("web", ("fastapi", "pydantic", "httpx", "uvicorn"),
            ("fastapi", "pydantic", "pydantic_core", "httpx", "uvicorn", "starlette")),
        Env("geo", ("shapely", "pyproj"), ("shapely", "pyproj")),
        Env("jupyter", ("jupyterlab", "ipykernel", "ipywidgets", "nbconvert", "nbclient"),
            ("jupyterlab", "ipykernel", "ipywidgets", "nbconvert", "nbclient", "IPython",
             "zmq", "tornado")),
        Env("scientific", ("numpy", "pandas", "scipy", "scikit-learn"),
            ("numpy", "pandas", "scipy", "sklearn")),
        Env("dataframes", ("polars", "pyarrow", "duckdb"), ("polars", "pyarrow", "duckdb")),
        Env("torch-cpu", (torch_pin, "numpy"), ("torch", "numpy"),
            find_links=(str(torch_wheels),)),
        Env("dev", (), ("numpy", "pandas", "sklearn", "pyarrow", "boto3", "httpx", "moto",
                        "hypothesis", "joblib", "loky", "distributed", "ipykernel",
                        "pymdownx", "mkdocs"),
            venv=ROOT / ".venv"),
    ]


@dataclass
class Row:
    """One (environment, platform) result."""

    env: str
    platform: str
    distributions: int = 0
    resolve_s: float | None = None
    build_s: float | None = None
    image_mib: float | None = None
    wheel_tags: str = ""
    imports: str = ""
    ok: bool = False
    note: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _runtime_requirements() -> list[str]:
    """starburst's runtime dependencies and its ``aws`` extra, less uv.

    The image carries starburst (built from this checkout) but its
    dependencies come from the snapshot, as for a user who installed it;
    uv builds images and is not needed by a worker.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["aws"]]
    return [r for r in reqs if not r.replace(" ", "").lower().startswith("uv")]


def _uv(args: list[str]) -> None:
    from starburst.envsync._uv import run_uv

    result = run_uv(args)
    if result.returncode != 0:
        raise RuntimeError(f"uv {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise RuntimeError(f"{venv} has no lib/python*/site-packages")
    return found[0]


def _local_project(root: Path) -> Path:
    """A small project with one dependency, for an editable install."""
    project = root / "corpus-local"
    (project / "src" / "corpus_local").mkdir(parents=True)
    (project / "src" / "corpus_local" / "__init__.py").write_text(
        "import attrs\n\n@attrs.define\nclass Point:\n    x: int = 1\n", encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "corpus-local"\nversion = "0.1"\ndependencies = ["attrs"]\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n', encoding="utf-8")
    return project


def make_venv(env: Env, root: Path) -> Path:
    """Create the environment's venv with uv under ``root``; return its site-packages."""
    if env.venv is not None:
        return _site_packages(env.venv)
    venv = root / "venv"
    _uv(["venv", "--quiet", "--python", sys.executable, str(venv)])
    args = ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
            *env.packages, *_runtime_requirements()]
    for link in env.find_links:
        args += ["--find-links", link]
    if env.editable:
        args += ["--editable", str(_local_project(root))]
    _uv(args)
    return _site_packages(venv)


def probe(modules: list[str]) -> dict[str, str]:
    """(In the task) import each module; its file, or the error, by name."""
    import importlib

    out: dict[str, str] = {}
    for name in modules:
        try:
            out[name] = str(getattr(importlib.import_module(name), "__file__", "") or "")
        except Exception as exc:  # report every failure, not only the first
            out[name] = f"ERROR {type(exc).__name__}: {exc}"
    return out


def check_wheel_tags(site: Path, platform: str) -> tuple[bool, str]:
    """Whether every installed wheel in ``site`` is built for ``platform``."""
    machine, other = _MACHINE[platform], _MACHINE["arm64" if platform == "x86_64" else "x86_64"]
    bad: list[str] = []
    count = 0
    for wheel in sorted(site.glob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in
                wheel.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.startswith("Tag:")]
        count += 1
        for tag in tags:
            plat = tag.rsplit("-", 1)[-1]
            if other in plat or (plat != "any" and machine not in plat):
                bad.append(f"{wheel.parent.name}: {tag}")
    if bad:
        return False, f"BAD {len(bad)}: {'; '.join(bad[:3])}"
    return True, f"ok ({count} wheels)"


def _image_mib(registry: Any, repo: str, tag: str) -> float:
    body = registry.get_manifest(repo, tag).json()
    return float(sum(int(layer["size"]) for layer in body["layers"])) / MIB


def _run_imports(env: Env, snapshot: Any, index: Any) -> tuple[bool, str]:
    import starburst

    settings = starburst.Settings(lease=30.0, heartbeat=5.0, poll=0.05, idle_timeout=60,
                                  client_heartbeat=5.0, client_stale=600)
    with starburst.Executor(backend="fargate", env="auto", workers=1, settings=settings,
                            progress=False, snapshot=snapshot, index=index) as ex:
        got = ex.submit(probe, list(env.imports)).result(timeout=_TASK_TIMEOUT_S)
    failed = {k: v for k, v in got.items() if v.startswith("ERROR")}
    # The editable project travels in the session's code archive; all else
    # must come from the unpacked image (the runner isolates it from the host).
    foreign = {k: v for k, v in got.items() if k not in failed and k != "corpus_local"
               and "starburst-images-" not in v}
    if failed or foreign:
        detail = "; ".join(f"{k}: {v}" for k, v in [*failed.items(), *foreign.items()])
        return False, f"{len(got) - len(failed) - len(foreign)}/{len(got)} ({detail[:300]})"
    return True, f"ok {len(got)}/{len(got)}"


def run_one(env: Env, site: Path, platform: str, work: Path,
            log: Callable[[str], None]) -> Row:
    """Resolve, build, push, check and (x86_64) run one environment for one platform."""
    from starburst.backends import _environment
    from starburst.envsync.ecrauth import ecr_registry
    from starburst.envsync.errors import EnvironmentBuildError
    from starburst.envsync.pull import extract_image
    from starburst.envsync.resolve import IndexOptions, resolve
    from starburst.envsync.snapshot import take_snapshot

    row = Row(env.name, platform)
    snapshot = take_snapshot(platform, path=[str(site)])
    row.distributions = len(snapshot.distributions)
    index = IndexOptions(find_links=env.find_links) if env.find_links else None
    torch = next((d for d in snapshot.distributions if d.name == "torch"), None)
    if platform == "arm64" and torch is not None and "+cpu" in torch.version:
        # No +cpu aarch64 wheel here: resolve the public release (metadata only).
        dists = tuple(dataclasses.replace(d, version=_TORCH) if d.name == "torch" else d
                      for d in snapshot.distributions)
        start = time.perf_counter()
        lock = resolve(dataclasses.replace(snapshot, distributions=dists))
        row.resolve_s = time.perf_counter() - start
        heavy = [n for n, _ in lock.pins if n.startswith("nvidia-")]
        row.wheel_tags = row.imports = "n/a (resolve only)"
        row.ok = True
        row.note = (f"resolved {len(lock.pins)} pins for aarch64 (torch=={_TORCH}"
                    f"{', ' + str(len(heavy)) + ' nvidia-* pins' if heavy else ', CPU only'}); "
                    "not built: no CPU torch wheel for aarch64 on this machine, and arm64 "
                    "cannot run here")
        return row
    options = _environment.EnvOptions(mode="auto", platform=platform, index=index,
                                      snapshot=snapshot)
    try:
        built = _environment.ensure_environment(options, snapshot, region=REGION,
                                                repository="starburst")
    except EnvironmentBuildError as exc:
        row.note = f"build failed: {str(exc)[:400]}"
        return row
    row.timings = {k: round(v, 3) for k, v in built.timings.items()}
    row.resolve_s = built.timings.get("resolve")
    row.build_s = built.timings["total"] - (row.resolve_s or 0.0)
    image = built.image
    with ecr_registry(region=REGION) as registry:
        row.image_mib = _image_mib(registry, image.repository, image.tag)
        rootfs = work / f"rootfs-{platform}"
        try:
            site_dir = extract_image(registry, f"{image.repository}:{image.tag}", rootfs,
                                     platform=platform, only="usr/local/lib")
            tags_ok, row.wheel_tags = check_wheel_tags(site_dir, platform)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    if platform == "x86_64":
        log(f"  {env.name}/{platform}: running the import task")
        imports_ok, row.imports = _run_imports(env, snapshot, index)
    else:
        imports_ok, row.imports = True, _NOT_RUNNABLE
    row.ok = tags_ok and imports_ok
    if built.warnings:
        row.note = "; ".join(built.warnings)[:200]
    return row


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = report.bench_parser(__doc__)
    parser.add_argument("--env", action="append", default=[],
                        help="environments to run (repeat or comma-separate; default all)")
    parser.add_argument("--platform", action="append", default=[],
                        help="x86_64 and/or arm64 (repeat or comma-separate; default both)")
    parser.add_argument("--torch-wheels", type=Path, default=Path("/opt/wheels"),
                        help="directory holding the torch==2.13.0+cpu wheel")
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args(argv)
    envs = corpus(args.torch_wheels)
    names = [n for item in args.env for n in item.split(",") if n] or [e.name for e in envs]
    unknown = sorted(set(names) - {e.name for e in envs})
    if unknown:
        parser.error(f"unknown environment(s) {unknown}; choose from "
                     f"{[e.name for e in envs]}")
    platforms = [p for item in args.platform for p in item.split(",") if p] or list(PLATFORMS)
    if set(platforms) - set(PLATFORMS):
        parser.error(f"--platform takes {' and '.join(PLATFORMS)}")
    chosen = [e for e in envs if e.name in names]
    torch_wheel = any(args.torch_wheels.glob(f"torch-{_TORCH}+cpu-*x86_64.whl"))
    if any(e.name == "torch-cpu" for e in chosen) and not torch_wheel:
        parser.error(f"--torch-wheels {args.torch_wheels} holds no torch-{_TORCH}+cpu wheel; "
                     "leave torch-cpu out (--env ...) or point at one")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    from starburst.testing import emulated_aws

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="starburst-env-corpus-") as tmp, \
            emulated_aws(registry=True, isolate=True):
        os.environ["STARBURST_CACHE_DIR"] = str(Path(tmp) / "cache")
        for env in chosen:
            work = Path(tmp) / env.name
            work.mkdir()
            log(f"{env.name}: creating the environment")
            start = time.perf_counter()
            try:
                site = make_venv(env, work)
            except RuntimeError as exc:
                rows += [Row(env.name, p, note=str(exc)[:400]) for p in platforms]
                continue
            log(f"{env.name}: venv ready in {time.perf_counter() - start:.0f} s")
            for platform in platforms:
                log(f"  {env.name}/{platform}: resolve, build, push")
                rows.append(run_one(env, site, platform, work, log))
            if env.venv is None:
                shutil.rmtree(work, ignore_errors=True)
        os.environ.pop("STARBURST_CACHE_DIR", None)

    report.print_table("environment corpus (image MiB: compressed layers on the synthetic base)",
                       ["environment", "platform", "dists", "resolve s", "build s", "image MiB",
                        "wheel tags", "imports ok"],
                       [[r.env, r.platform, str(r.distributions), _fmt(r.resolve_s),
                         _fmt(r.build_s), _fmt(r.image_mib), r.wheel_tags, r.imports]
                        for r in rows])
    for r in rows:
        if r.note:
            print(f"note {r.env}/{r.platform}: {r.note}")
    passed = all(r.ok for r in rows)
    print(f"{'PASS' if passed else 'FAIL'}: {sum(r.ok for r in rows)}/{len(rows)} "
          "environment builds checked")
    if args.json:
        report.emit_json({"bench": "env_corpus", "environment": report.environment(),
                          "pass": passed, "rows": [dataclasses.asdict(r) for r in rows]})
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
