"""The workers' environment of a Fargate session: the image and the user's code.

::

    env="auto"  snapshot (+ packages=) --ensure_image--> ECR repository (created if missing)
                tag exists? nothing built or sent; the task definition names the image
                STARBURST_EXPECTED_ENV_HASH=<hash> in the task env; the worker compares
                it with the image's STARBURST_ENV_HASH
    env="off"   the configured image= as is; no hash check
    both        build_code_archive() --> store key sessions/<id>/code/<sha256>.zip
                STARBURST_CODE=<key>; the worker downloads it and puts it first on sys.path

``env="docker"`` (building with a local Docker engine) is not supported:
the image is built without Docker.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from ..wire.keys import code_key

if TYPE_CHECKING:
    from ..envsync.image import BuildReport, ImagePlan
    from ..envsync.resolve import IndexOptions
    from ..envsync.snapshot import Snapshot
    from ..transport.base import Transport

__all__ = ["BASE_IMAGE_ENV", "CODE_ENV", "ENV_MODES", "EXPECTED_HASH_ENV", "EnvOptions",
           "base_image_of", "ensure_environment", "plan_environment",
           "pop_env_options", "upload_code"]

log = logging.getLogger("starburst")

ENV_MODES = ("auto", "off", "docker")
#: Task env: the environment hash the session expects the image to carry.
EXPECTED_HASH_ENV = "STARBURST_EXPECTED_ENV_HASH"
#: Task env: the store key of the session's code archive.
CODE_ENV = "STARBURST_CODE"
#: The base image when ``base_image=`` is not given (the emulator sets it).
BASE_IMAGE_ENV = "STARBURST_BASE_IMAGE"
#: Options this module takes out of the backend options.
OPTION_NAMES = ("env", "base_image", "packages", "platform", "index", "snapshot", "code")
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s,;]+)\s*$")
_PROGRESS_STEP = 32 * 1024 * 1024


@dataclass(frozen=True)
class EnvOptions:
    """The environment options of a Fargate session (validated).

    Attributes:
        mode: ``auto`` (build the image) or ``off`` (use ``image=``).
        platform: ``x86_64`` or ``arm64``.
        base_image: base image reference; None = ``STARBURST_BASE_IMAGE`` or python slim.
        packages: ``name==version`` pins added to the snapshot.
        index: where uv finds packages (``IndexOptions``); uv's defaults when None.
        snapshot: the environment to reproduce; the running interpreter's when None.
        code: ship the user's code archive.
    """

    mode: str
    platform: str
    base_image: str | None = None
    packages: tuple[tuple[str, str], ...] = ()
    index: IndexOptions | None = None
    snapshot: Snapshot | None = None
    code: bool = True


def pop_env_options(extra: dict[str, Any], *, arch: str | None) -> tuple[str | None, EnvOptions]:
    """Take the environment options out of ``extra``; return ``(explicit env, options)``.

    The mode is settled by :func:`settle_mode` once the configured image is known.
    """
    env = extra.pop("env", None)
    if env is not None and env not in ENV_MODES:
        raise ConfigurationError(f"env={env!r} must be one of {', '.join(map(repr, ENV_MODES))}")
    platform = extra.pop("platform", None)
    if platform is not None and arch is not None and platform != arch:
        raise ConfigurationError(f"platform={platform!r} and arch={arch!r} disagree; pass one")
    chosen = str(platform or arch or "x86_64")
    if chosen not in ("x86_64", "arm64"):
        raise ConfigurationError(f"platform={chosen!r} must be 'x86_64' or 'arm64'")
    base_image = extra.pop("base_image", None)
    if base_image is not None and not isinstance(base_image, str):
        raise ConfigurationError(f"base_image={base_image!r} must be an image reference")
    raw = extra.pop("packages", None) or ()
    if isinstance(raw, str):
        raise ConfigurationError("packages= takes a list of 'name==version' strings")
    pins: list[tuple[str, str]] = []
    for item in raw:
        match = _PIN.match(str(item))
        if not match:
            raise ConfigurationError(
                f"packages=[{item!r}]: pin each extra package to a version, e.g. "
                "'name==1.2.3' (installed packages are included automatically)")
        pins.append((match.group(1), match.group(2)))
    code = extra.pop("code", True)
    return env, EnvOptions(mode=env or "auto", platform=chosen, base_image=base_image,
                           packages=tuple(pins), index=extra.pop("index", None),
                           snapshot=extra.pop("snapshot", None), code=bool(code))


def settle_mode(env: str | None, options: EnvOptions, image: str | None) -> EnvOptions:
    """The effective mode: ``auto`` unless an image is configured (then ``off``)."""
    mode = env or ("off" if image else "auto")
    if mode == "docker":
        raise ConfigurationError(
            "env='docker' is not supported: starburst has no Docker engine support yet. Use "
            "env='auto' (the default: the image is built and pushed without Docker) or "
            "env='off' with image='...' naming an image you built")
    if mode == "off" and not image:
        raise ConfigurationError(
            "env='off' needs a container image: pass image='...' to the Executor, set "
            "STARBURST_IMAGE, or add image = \"...\" to the starburst config (an image with "
            "the same Python and packages as here, and starburst installed); or use "
            "env='auto' to build one")
    return replace(options, mode=mode)


def _with_packages(snapshot: Snapshot, packages: tuple[tuple[str, str], ...]) -> Snapshot:
    from ..envsync.snapshot import Distribution, canonical_name

    if not packages:
        return snapshot
    added = {canonical_name(n): Distribution(canonical_name(n), v) for n, v in packages}
    kept = [d for d in snapshot.distributions if d.name not in added]
    dists = tuple(sorted([*kept, *added.values()], key=lambda d: d.name))
    return replace(snapshot, distributions=dists)


def snapshot_of(options: EnvOptions) -> Snapshot:
    """The snapshot the session reproduces (``packages=`` included)."""
    from ..envsync.snapshot import take_snapshot

    snapshot = options.snapshot or take_snapshot(options.platform)
    if snapshot.target.arch != options.platform:
        # The image would be built for one architecture and run on another.
        raise ConfigurationError(
            f"snapshot= was taken for {snapshot.target.arch} but the workers run on "
            f"platform={options.platform!r}: pass platform={snapshot.target.arch!r}, or take "
            f"the snapshot with take_snapshot({options.platform!r})")
    return _with_packages(snapshot, options.packages)


def ensure_environment(options: EnvOptions, snapshot: Snapshot, *, region: str,
                       repository: str) -> BuildReport:
    """Make sure the session's image is in the ECR repository (created if missing)."""
    from ..aws import provision
    from ..envsync.ecrauth import ecr_registry
    from ..envsync.image import ensure_image

    provision.ensure_repository(repository, region=region)
    sent = [0, 0]  # bytes so far, bytes at the last log line

    def progress(n: int) -> None:
        sent[0] += n
        if sent[0] - sent[1] >= _PROGRESS_STEP:
            sent[1] = sent[0]
            log.info("starburst: uploading the worker image: %.0f MiB sent",
                     sent[0] / 2 ** 20)

    base = base_image_of(options)
    start = time.perf_counter()
    log.info("starburst: checking the worker image for this environment (%s, Python %s)",
             snapshot.target.arch, snapshot.target.python)
    with ecr_registry(region=region) as registry:
        report = ensure_image(registry, repository, snapshot=snapshot, base_image=base,
                              index=options.index, progress=progress)
    for warning in report.warnings:
        log.warning("starburst: %s", warning)
    if report.built:
        log.info("starburst: built and pushed %s (%.1f MiB sent) in %.1f s",
                 report.image.reference, report.bytes_uploaded / 2 ** 20,
                 time.perf_counter() - start)
    else:
        log.info("starburst: worker image %s is up to date; nothing built or sent",
                 report.image.reference)
    _record(snapshot, report, repository)
    return report


def base_image_of(options: EnvOptions) -> str | None:
    """The base image reference: ``base_image=``, ``STARBURST_BASE_IMAGE``, else None
    (python slim, chosen by envsync)."""
    return options.base_image or os.environ.get(BASE_IMAGE_ENV) or None


def plan_environment(options: EnvOptions, snapshot: Snapshot) -> ImagePlan:
    """The hash and tag :func:`ensure_environment` would push, without building or pushing."""
    from ..envsync.image import plan_image

    return plan_image(snapshot=snapshot, base_image=base_image_of(options),
                      index=options.index)


def _record(snapshot: Snapshot, report: BuildReport, repository: str) -> None:
    """Note the image in the local build record (``starburst env show``); never fails."""
    from ..envsync.history import record_build

    image = report.image
    try:
        record_build(snapshot=snapshot, tag=image.tag, env_hash=image.env_hash,
                     digest=image.digest, reference=image.reference, repository=repository,
                     built=report.built, bytes_uploaded=report.bytes_uploaded)
    except OSError as exc:
        log.debug("starburst: could not record the environment build: %s", exc)



def upload_code(transport: Transport, session: str, snapshot: Snapshot | None, *,
                notes: list[str] | None = None) -> str | None:
    """Build the user's code archive and put it in the session's store; return its key.

    What the archive left out (dotfiles, keys, credentials, git-ignored files)
    goes to ``notes``, the lines the client shows once before the run (logged
    as a warning without ``notes``).
    """
    from ..envsync.code import build_code_archive

    archive = build_code_archive(snapshot)
    if archive is None:
        return None
    for warning in archive.warnings:
        log.warning("starburst: code archive: %s", warning)
    skipped = archive.skipped_note()
    if skipped is not None:
        if notes is not None:
            notes.append(skipped)
        else:
            log.warning("starburst: %s", skipped)
    key = code_key(session, archive.digest)
    transport.store.put(key, archive.path.read_bytes())
    log.info("starburst: shipped the code of %s (%s)", ", ".join(archive.modules),
             archive.digest[:12])
    return key
