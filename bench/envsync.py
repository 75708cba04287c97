"""Environment sync: cold build, warm check, and an upgrade of one big package.

Two local CNCF registries stand in for ECR (htpasswd Basic auth, user
``AWS``, as ECR's API takes it) and for the public source of a synthetic
``python:3.X-slim`` base image. Measured:

* **cold**: a build and push of ``--packages`` (numpy, pandas, scikit-learn
  and their dependencies) with an empty uv cache and an empty layer cache,
  split into resolve, install, tar and upload seconds and bytes. The wheels
  come from PyPI (the only phase that downloads).
* **warm check**: ``ensure_image`` again with nothing changed: seconds
  (median of ``--repeat``) and bytes uploaded (must be 0); and, apart, the
  time to snapshot this interpreter (which a real check adds).
* **upgrade**: the first package (numpy) moves from the previous to the
  newest compatible release, everything else pinned: bytes uploaded against
  the size of that package's new layer (ideally ~1.0: config and manifest
  are a few KiB).

With ``--quick`` no package is downloaded: small synthetic wheels, a low
layer-split threshold, same phases (a smoke test). Building starburst's
own wheel needs its build backend (hatchling) from uv's cache, which
installing starburst with uv already filled.

Targets: warm check under 1 s; warm check sends 0 bytes; upgrade uploads
at most 1.1x the upgraded layer.

Usage (from the repository root; needs ``apt-get install docker-registry``)::

    .venv/bin/python bench/envsync.py [--packages numpy pandas scikit-learn] [--json]
    .venv/bin/python bench/envsync.py --quick --json
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report as report  # the bench directory is not a package

from starburst.envsync._uv import run_uv
from starburst.envsync.auth import RegistryAuth
from starburst.envsync.image import BuildReport, ensure_image
from starburst.envsync.layers import DEFAULT_SPLIT_BYTES
from starburst.envsync.registry import Registry
from starburst.envsync.resolve import IndexOptions
from starburst.envsync.snapshot import Distribution, Snapshot, take_snapshot
from starburst.envsync.target import Target as Platform
from starburst.testing.registry import LocalRegistry, push_synthetic_base

PASSWORD = "123456789012-auth-token"  # what moto's ECR token decodes to
MIB = 1024 * 1024
# --quick: packages above 64 KiB get their own layer, like 20 MiB ones do for real.
QUICK_THRESHOLD = 64 * 1024


def _pins(packages: list[str], extra: str, platform: Platform) -> dict[str, str]:
    """Resolve ``packages`` (plus one constraint line) for the target with uv."""
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "req.in"
        req.write_text("\n".join([*packages, extra]) + "\n")
        result = run_uv(["pip", "compile", str(req), "--no-header", "--no-annotate",
                         "--python-platform", platform.uv_platform, "--python-version",
                         platform.python, "--only-binary", ":all:"])
    if result.returncode:
        raise SystemExit(f"could not resolve {packages}: {result.stderr[-2000:]}")
    pins = {}
    for line in result.stdout.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[name.strip()] = version.strip()
    return pins


def _previous(package: str, packages: list[str], platform: Platform) -> tuple[dict[str, str],
                                                                              dict[str, str]]:
    """(pins with the previous release of ``package``, pins with the newest)."""
    newest = _pins(packages, "", platform)
    older = _pins(packages, f"{package}<{newest[package]}", platform)
    return older, {**older, package: newest[package]}


def _wheel(directory: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    """Write a minimal pure-Python wheel."""
    info = f"{name}-{version}.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
             f"Version: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={_b64sha(data)},{len(data)}\n"
                     for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)


def _b64sha(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheelhouse(directory: Path) -> None:
    """Synthetic wheels for --quick: one big package (two releases), two small ones."""
    directory.mkdir(parents=True)
    for version in ("1.0", "1.1"):
        _wheel(directory, "bigpkg", version, {
            "bigpkg/__init__.py": b"",
            "bigpkg/data.bin": random.Random(version).randbytes(256 * 1024)})
    _wheel(directory, "smallpkg", "1.0", {"smallpkg.py": b"X = 1\n"})
    _wheel(directory, "tinypkg", "1.0", {"tinypkg.py": b"Y = 2\n"})


def _snapshot(pins: dict[str, str], platform: Platform) -> Snapshot:
    # Not installed here, so purity is unknown: every package must come as a wheel.
    return Snapshot(target=platform, distributions=tuple(
        Distribution(name, version, pure=False) for name, version in sorted(pins.items())))


def _phase(build: BuildReport) -> dict[str, Any]:
    t = build.timings
    return {"built": build.built, "resolve_s": round(t.get("resolve", 0.0), 3),
            "install_s": round(t.get("install", 0.0), 3), "tar_s": round(t.get("tar", 0.0), 3),
            "upload_s": round(t.get("upload", 0.0), 3), "total_s": round(t["total"], 3),
            "bytes_uploaded": build.bytes_uploaded,
            "layers": {x.name: x.blob.size for x in build.layers},
            "tag": build.image.tag}


def main() -> int:
    parser = report.bench_parser(__doc__)
    parser.add_argument("--packages", nargs="+", default=["numpy", "pandas", "scikit-learn"])
    report.add_common_args(parser, repeat=5)
    args = parser.parse_args()
    repeat = report.resolve_repeat(args)
    platform = Platform.of("x86_64")
    with tempfile.TemporaryDirectory(prefix="starburst-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.quick:
            wheels = tmp / "wheels"
            _wheelhouse(wheels)
            index = IndexOptions(find_links=(str(wheels),), no_index=True)
            old = {"bigpkg": "1.0", "smallpkg": "1.0", "tinypkg": "1.0"}
            new, upgraded, threshold = {**old, "bigpkg": "1.1"}, "bigpkg", QUICK_THRESHOLD
        else:
            index = IndexOptions()
            upgraded = args.packages[0]
            old, new = _previous(upgraded, args.packages, platform)
            threshold = DEFAULT_SPLIT_BYTES
        if not args.quick:
            # An empty uv cache: the cold build downloads and unpacks every wheel.
            os.environ["UV_CACHE_DIR"] = str(tmp / "uv-cache")
        with LocalRegistry(tmp / "ecr", user="AWS", password=PASSWORD) as ecr, \
                LocalRegistry(tmp / "public") as public:
            with Registry(public.url) as seed:
                push_synthetic_base(seed, python=platform.python)
            auth = RegistryAuth(lambda: ("AWS", PASSWORD), basic_first=True)
            with Registry(ecr.url, auth=auth) as target, Registry(public.url) as source:
                def build(pins: dict[str, str]) -> BuildReport:
                    return ensure_image(
                        target, "bench/workers", snapshot=_snapshot(pins, platform),
                        base_image=f"{public.host}/library/python:{platform.python}-slim",
                        base_registry=source, index=index, threshold=threshold,
                        cache_dir=tmp / "cache")

                cold = build(old)
                warm_runs: list[float] = []
                warm_bytes = 0
                for _ in range(repeat):
                    start = time.perf_counter()
                    warm = build(old)
                    warm_runs.append(time.perf_counter() - start)
                    warm_bytes += warm.bytes_uploaded
                    assert not warm.built
                up = build(new)
    new_layer = next((x for x in up.layers if x.name == f"{upgraded}=={new[upgraded]}"), None)
    layer_size = new_layer.blob.size if new_layer else 0
    ratio = up.bytes_uploaded / layer_size if layer_size else float("nan")
    warm_s = statistics.median(warm_runs)
    snap_runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        local = take_snapshot()
        snap_runs.append(time.perf_counter() - start)
    snap_s = statistics.median(snap_runs)

    c = _phase(cold)
    report.print_table(f"envsync cold build of {len(old)} distributions "
                       f"({', '.join(args.packages) if not args.quick else 'synthetic'})",
                       ["phase", "seconds"],
                       [[k.removesuffix("_s"), f"{c[k]:.2f}"]
                        for k in ("resolve_s", "install_s", "tar_s", "upload_s", "total_s")])
    report.print_table("layers of the cold build", ["layer", "MiB (gzip)"],
                       [[name, f"{size / MIB:.2f}"] for name, size in c["layers"].items()])
    report.print_table("envsync figures", ["measure", "value"], [
        ["cold: bytes uploaded", f"{cold.bytes_uploaded / MIB:.2f} MiB"],
        ["warm check: median seconds", f"{warm_s:.3f}"],
        [f"snapshot of this interpreter ({len(local.distributions)} dists): median seconds",
         f"{snap_s:.3f}"],
        ["warm check: bytes uploaded", str(warm_bytes)],
        [f"upgrade {upgraded} {old[upgraded]} -> {new[upgraded]}: bytes uploaded",
         f"{up.bytes_uploaded / MIB:.2f} MiB"],
        [f"upgrade: new {upgraded} layer", f"{layer_size / MIB:.2f} MiB"],
        ["upgrade: uploaded / layer", f"{ratio:.3f}"],
        ["upgrade: total seconds", f"{up.timings['total']:.2f}"],
    ])
    targets = [report.Target("warm checks per second (>= 1: under 1 s)", 1 / warm_s, 1.0),
               report.Target("warm check sent nothing (1 = yes)", float(warm_bytes == 0), 1.0),
               report.Target("layer / uploaded on upgrade (>= 0.91: at most 1.1x)",
                             1 / ratio if ratio == ratio and ratio else float("nan"), 0.91)]
    report.print_targets(targets)
    if args.json:
        report.emit_json({"bench": "envsync", "quick": args.quick, "repeat": repeat,
                          "packages": args.packages if not args.quick else sorted(old),
                          "env": report.environment(), "cold": c,
                          "snapshot": {"median_s": round(snap_s, 4),
                                       "distributions": len(local.distributions)},
                          "warm_check": {"median_s": round(warm_s, 4),
                                         "runs_s": [round(s, 4) for s in warm_runs],
                                         "bytes_uploaded": warm_bytes},
                          "upgrade": {"package": upgraded, "from": old[upgraded],
                                      "to": new[upgraded], **_phase(up),
                                      "layer_bytes": layer_size, "ratio": round(ratio, 4)},
                          "targets": {t.name: t.as_dict() for t in targets},
                          "pass": report.gating_passed(targets)})
    return 0 if report.gating_passed(targets) else 1


if __name__ == "__main__":
    sys.exit(main())
