"""``starburst env build | show | prune``: the workers' environment image, by hand.

``build`` does what ``Executor(backend="fargate", env="auto")`` does before a
session (:func:`starburst.backends._environment.ensure_environment`): the
image for this interpreter is built and pushed to the ECR repository, or
found already there. ``show`` computes the same tag without building
(:func:`~starburst.backends._environment.plan_environment`), asks the
registry whether it exists, and compares this interpreter's snapshot with
the one of the last image ensured on this machine (the record in the
envsync cache, :mod:`starburst.envsync.history`).

``prune`` deletes old ``env-*`` images. Where the images are listed and
deleted depends on where they live:

* ``ecr`` (the normal case): ECR's own API. ``DescribeImages`` lists the
  repository's images with their push times, the newest ``--keep`` images
  with an ``env-*`` tag are kept, and the rest go in ``BatchDeleteImage``
  calls (by digest). An image that also carries a tag not starting with
  ``env-`` is never deleted.
* ``registry``: when ``STARBURST_REGISTRY_URL`` overrides where registry
  calls go (an emulator, as in the test suite, or a pull-through proxy),
  the images are in that registry and ECR's control plane does not know
  them. Tags come from ``GET /v2/<repo>/tags/list`` and manifests are
  deleted with ``DELETE /v2/<repo>/manifests/<digest>`` (the distribution
  registry needs ``storage.delete.enabled``). The registry API states no
  push time, so images are ordered by when this machine last recorded
  them (build record); images it never recorded count as the oldest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import StarburstError
from ._common import aws_errors, echo_json, json_option, region_option, table

if TYPE_CHECKING:
    from mypy_boto3_ecr.type_defs import ImageIdentifierTypeDef

    from ..backends._environment import EnvOptions
    from ..envsync.registry import Registry

__all__ = ["env"]

_TAG_PREFIX = "env-"
#: BatchDeleteImage takes at most 100 image ids per call.
_BATCH = 100


def _platform_option(fn: Any) -> Any:
    return click.option("--platform", type=click.Choice(["x86_64", "arm64"]),
                        default="x86_64", show_default=True,
                        help="CPU architecture of the workers.")(fn)


def _env_options(fn: Any) -> Any:
    """The options that decide the image (those of Executor(env="auto"))."""
    for option in reversed([
        _platform_option,
        click.option("--base-image", default=None,
                     help="Base image reference.  [default: STARBURST_BASE_IMAGE, else "
                          "python:3.X-slim from ECR Public]"),
        click.option("--package", "packages", multiple=True, metavar="NAME==VERSION",
                     help="An extra package pinned to a version (repeatable), as "
                          "packages= of the Executor."),
        click.option("--index-url", default=None, help="Package index replacing uv's default."),
        click.option("--find-links", multiple=True, metavar="PATH_OR_URL",
                     help="Also look for wheels here (repeatable)."),
        click.option("--no-index", is_flag=True,
                     help="Use only --find-links, no package index."),
    ]):
        fn = option(fn)
    return fn


def _options(platform: str, base_image: str | None, packages: tuple[str, ...],
             index_url: str | None, find_links: tuple[str, ...], no_index: bool) -> EnvOptions:
    from ..backends._environment import pop_env_options
    from ..envsync.resolve import IndexOptions

    index = None
    if index_url or find_links or no_index:
        index = IndexOptions(index_url=index_url, find_links=tuple(find_links),
                             no_index=no_index)
    _, options = pop_env_options({"platform": platform, "base_image": base_image,
                                  "packages": list(packages), "index": index}, arch=None)
    return options


def _where(region: str | None) -> tuple[str, str]:
    """``(region, repository)`` as the fargate backend settles them."""
    from ..aws.config import load_config

    config = load_config({"region": region})
    return config.resolved_region(region), config.ecr_repository


#: Said after every "could not reach": the network itself is the first suspect.
_NETWORK_FIX = ("check this machine's network connection and proxy settings (HTTPS_PROXY, "
                "NO_PROXY)")


def _unreachable(exc: BaseException) -> str | None:
    """Where a connection failed, when ``exc`` (or what caused it) is one, else None.

    httpx (registries) and botocore (AWS APIs) connection errors count; the
    answer is the URL tried, or "" when the error does not carry it.
    """
    import httpx
    from botocore.exceptions import ConnectionError as BotoConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.TransportError):
            try:
                return str(current.request.url)
            except RuntimeError:  # raised without a request
                return ""
        if isinstance(current, BotoConnectionError):
            return str(current.kwargs.get("endpoint_url", ""))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def _reaching(what: str, fix: str) -> Iterator[None]:
    """Name ``what`` was being reached, and the fix, when the block fails to connect.

    Offline, the registry and AWS errors say only ``ConnectError`` and an
    errno; this says which service, at which URL, and what to do.
    """
    try:
        yield
    except StarburstError as exc:
        url = _unreachable(exc)
        if url is None:
            raise
        at = f" at {url}" if url else ""
        raise click.ClickException(
            f"could not reach {what}{at} ({exc}). Fix: {fix}; {_NETWORK_FIX}") from exc


_BASE_FIX = ("pass --base-image REF (or set STARBURST_BASE_IMAGE) naming a python:3.X-slim "
             "image in a registry this machine can reach")


def _ecr_fix(region: str) -> str:
    return (f"check the region (--region; now {region}) and that this machine can reach ECR "
            f"(api.ecr.{region}.amazonaws.com and the registry), directly, through a VPC "
            "endpoint or a proxy")


def _manifest_layers(registry: Registry, repository: str, ref: str) -> dict[str, Any]:
    """Layers (digest, size) and total compressed size of an image's manifest."""
    manifest = registry.get_manifest(repository, ref).json()
    sizes = [int(x.get("size") or 0) for x in manifest.get("layers") or []]
    layers = [{"digest": str(x.get("digest")), "size": n}
              for x, n in zip(manifest.get("layers") or [], sizes, strict=True)]
    config_size = int((manifest.get("config") or {}).get("size") or 0)
    return {"layers": layers, "size": sum(sizes) + config_size}


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def _when(epoch: float | None) -> str:
    if not epoch:
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group(short_help="Build, inspect and prune the workers' environment image.")
def env() -> None:
    """The workers' environment image (what Executor(backend="fargate", env="auto") uses)."""


# -- build ---------------------------------------------------------------------


@env.command(short_help="Build and push the image for this interpreter (if missing).")
@_env_options
@region_option
@json_option
def build(platform: str, base_image: str | None, packages: tuple[str, ...],
          index_url: str | None, find_links: tuple[str, ...], no_index: bool,
          region: str | None, as_json: bool) -> None:
    """Build and push this interpreter's environment image, as env="auto" does.

    Nothing is built or sent when the image is already in the repository.
    """
    with aws_errors():
        from ..backends._environment import ensure_environment, snapshot_of
        from ..envsync.ecrauth import ecr_registry

        options = _options(platform, base_image, packages, index_url, find_links, no_index)
        where, repository = _where(region)
        snapshot = snapshot_of(options)
        with _reaching("the base image's registry or ECR", f"{_BASE_FIX}; {_ecr_fix(where)}"):
            report = ensure_environment(options, snapshot, region=where,
                                        repository=repository)
        with _reaching(f"ECR in {where}", _ecr_fix(where)), \
                ecr_registry(region=where) as registry:
            stored = _manifest_layers(registry, repository, report.image.digest)
    image = report.image
    data = {
        "tag": image.tag, "reference": image.reference, "digest": image.digest,
        "env_hash": image.env_hash, "repository": repository, "region": where,
        "platform": snapshot.target.arch, "python": snapshot.target.python,
        "built": report.built, "bytes_uploaded": report.bytes_uploaded,
        "size": stored["size"], "layers": stored["layers"],
        "built_layers": [{"name": x.name, "digest": x.blob.digest, "size": x.blob.size,
                          "cached": x.cached} for x in report.layers],
        "warnings": list(report.warnings),
        "seconds": round(report.timings.get("total", 0.0), 3),
    }
    if as_json:
        echo_json(data)
        return
    click.echo(f"image:    {image.reference}")
    click.echo(f"digest:   {image.digest}")
    click.echo(f"hash:     {image.env_hash}")
    click.echo(f"layers:   {len(stored['layers'])} ({_mib(stored['size'])} compressed)")
    if report.built:
        click.echo(f"built:    yes, {len(report.layers)} starburst layer(s) "
                   f"({sum(1 for x in report.layers if x.cached)} from the local cache); "
                   f"{report.bytes_uploaded} bytes uploaded ({_mib(report.bytes_uploaded)})")
    else:
        click.echo("built:    no, the image was already there; 0 bytes uploaded")
    for warning in report.warnings:
        click.echo(f"warning:  {warning}")


# -- show ----------------------------------------------------------------------


@env.command(short_help="This interpreter's environment hash, tag, and what changed.")
@_env_options
@region_option
@json_option
def show(platform: str, base_image: str | None, packages: tuple[str, ...],
         index_url: str | None, find_links: tuple[str, ...], no_index: bool,
         region: str | None, as_json: bool) -> None:
    """The environment hash and tag for this interpreter, whether the image is in the
    registry (size, layers), and what changed since the last image built here."""
    with aws_errors():
        from ..backends._environment import plan_environment, snapshot_of
        from ..envsync.ecrauth import ecr_registry
        from ..envsync.history import diff_snapshot, last_build

        options = _options(platform, base_image, packages, index_url, find_links, no_index)
        where, repository = _where(region)
        snapshot = snapshot_of(options)
        with _reaching("the base image's registry", _BASE_FIX):
            plan = plan_environment(options, snapshot)
        stored: dict[str, Any] | None = None
        with _reaching(f"ECR in {where}", _ecr_fix(where)), \
                ecr_registry(region=where) as registry:
            digest = registry.manifest_digest(repository, plan.tag)
            if digest is not None:
                stored = _manifest_layers(registry, repository, digest)
            reference = f"{registry.name}/{repository}:{plan.tag}"
        last = last_build(snapshot.target.arch)
    diff = diff_snapshot(last, snapshot) if last is not None else None
    data: dict[str, Any] = {
        "env_hash": plan.env_hash, "tag": plan.tag, "reference": reference,
        "repository": repository, "region": where, "platform": snapshot.target.arch,
        "python": snapshot.target.python, "distributions": len(snapshot.distributions),
        "exists": digest is not None, "digest": digest,
        "size": stored["size"] if stored else None,
        "layers": stored["layers"] if stored else None,
        "last_build": None if last is None else {
            "tag": last.tag, "digest": last.digest, "built": last.built,
            "recorded_at": last.recorded_at, "same_tag": last.tag == plan.tag},
        "changes": None if diff is None else {
            "added": diff.added, "removed": diff.removed,
            "changed": {n: list(v) for n, v in diff.changed.items()},
            "target": diff.target, "none": diff.empty},
    }
    if as_json:
        echo_json(data)
        return
    click.echo(f"hash:     {plan.env_hash}")
    click.echo(f"image:    {reference}")
    click.echo(f"target:   Python {snapshot.target.python} {snapshot.target.arch}, "
               f"{len(snapshot.distributions)} distribution(s)")
    if stored is not None:
        click.echo(f"exists:   yes, {digest}, {len(stored['layers'])} layers, "
                   f"{_mib(stored['size'])} compressed")
    else:
        click.echo("exists:   no (starburst env build, or the next env='auto' session, "
                   "builds it)")
    if last is None or diff is None:
        click.echo("changes:  unknown, no image was built on this machine yet")
        return
    same = "same tag" if last.tag == plan.tag else f"then {last.tag}"
    click.echo(f"last:     {_when(last.recorded_at)} UTC ({same})")
    if diff.empty:
        click.echo("changes:  none since the last image")
        return
    click.echo("changes since the last image:")
    if diff.target:
        click.echo(f"  target  {diff.target}")
    for name, version in diff.added.items():
        click.echo(f"  + {name}=={version}")
    for name, version in diff.removed.items():
        click.echo(f"  - {name}=={version}")
    for name, (old, new) in diff.changed.items():
        click.echo(f"  ~ {name} {old} -> {new}")


# -- prune ---------------------------------------------------------------------


@dataclass
class _Image:
    digest: str
    tags: list[str]
    pushed_at: float | None  # None: unknown
    size: int | None = None
    other_tags: bool = False  # carries a tag not starting with env-


def _ecr_images(region: str, repository: str) -> list[_Image]:
    from botocore.exceptions import ClientError

    from ..aws.clients import client
    from ..aws.errors import error_code

    ecr = client("ecr", region=region)
    # Grouped by digest: one image may show once per tag (moto does this).
    by_digest: dict[str, _Image] = {}
    try:
        pages = ecr.get_paginator("describe_images").paginate(
            repositoryName=repository, filter={"tagStatus": "TAGGED"})
        for page in pages:
            for detail in page.get("imageDetails", []):
                tags = list(detail.get("imageTags") or [])
                pushed = detail.get("imagePushedAt")
                image = by_digest.setdefault(str(detail["imageDigest"]), _Image(
                    digest=str(detail["imageDigest"]), tags=[],
                    pushed_at=pushed.timestamp() if pushed else None,
                    size=detail.get("imageSizeInBytes")))
                image.tags += [t for t in tags if t.startswith(_TAG_PREFIX)]
                image.other_tags |= any(not t.startswith(_TAG_PREFIX) for t in tags)
    except ClientError as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return []
        raise
    return [x for x in by_digest.values() if x.tags]


def _registry_images(registry: Registry, repository: str) -> list[_Image]:
    from ..envsync.history import history

    seen: dict[str, float] = {}
    for entry in history():
        if entry.get("repository") == repository:
            seen[str(entry.get("tag"))] = float(entry.get("recorded_at") or 0.0)
    by_digest: dict[str, _Image] = {}
    tags = registry.list_tags(repository)
    for tag in tags:
        if not tag.startswith(_TAG_PREFIX):
            continue
        digest = registry.manifest_digest(repository, tag)
        if digest is None:
            continue
        image = by_digest.setdefault(digest, _Image(digest=digest, tags=[], pushed_at=None))
        image.tags.append(tag)
        if tag in seen:
            image.pushed_at = max(image.pushed_at or 0.0, seen[tag])
    for tag in tags:
        if not tag.startswith(_TAG_PREFIX):
            digest = registry.manifest_digest(repository, tag)
            if digest in by_digest:
                by_digest[digest].other_tags = True
    return list(by_digest.values())


def _ecr_delete(region: str, repository: str, images: list[_Image]) -> list[str]:
    from ..aws.clients import client
    from ..aws.errors import translate_errors

    ecr = client("ecr", region=region)
    failed: list[str] = []
    for start in range(0, len(images), _BATCH):
        ids: list[ImageIdentifierTypeDef] = [{"imageDigest": x.digest}
                                             for x in images[start:start + _BATCH]]
        with translate_errors(f"ECR BatchDeleteImage in {repository}"):
            resp = ecr.batch_delete_image(repositoryName=repository, imageIds=ids)
        failed += [f"{f.get('imageId', {}).get('imageDigest')}: {f.get('failureReason')}"
                   for f in resp.get("failures", [])]
    return failed


@env.command(short_help="Delete old env-* images from the ECR repository.")
@click.option("--keep", default=5, show_default=True, type=click.IntRange(min=0),
              help="Keep this many of the newest env-* images.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@region_option
@json_option
def prune(keep: int, dry_run: bool, yes: bool, region: str | None, as_json: bool) -> None:
    """Delete the repository's env-* images except the newest KEEP.

    Images that also carry a tag not starting with env- are never deleted.
    """
    from ..envsync.ecrauth import REGISTRY_URL_ENV

    with aws_errors():
        from ..envsync.ecrauth import ecr_registry

        where, repository = _where(region)
        route = "registry" if os.environ.get(REGISTRY_URL_ENV) else "ecr"
        if route == "ecr":
            images = _ecr_images(where, repository)
        else:
            with ecr_registry(region=where) as registry:
                images = _registry_images(registry, repository)
    images.sort(key=lambda x: (x.pushed_at or 0.0, x.digest), reverse=True)
    kept, doomed = images[:keep], images[keep:]
    protected = [x for x in doomed if x.other_tags]
    doomed = [x for x in doomed if not x.other_tags]
    failed: list[str] = []
    deleted = False
    if doomed and not dry_run:
        if not yes and not as_json:
            click.confirm(f"Delete {len(doomed)} image(s) from {repository} ({route})?",
                          abort=True)
        elif not yes:
            raise click.ClickException("pass --yes to delete with --json (or --dry-run)")
        with aws_errors():
            if route == "ecr":
                failed = _ecr_delete(where, repository, doomed)
            else:
                with ecr_registry(region=where) as registry:
                    for image in doomed:
                        registry.delete_manifest(repository, image.digest)
        deleted = True

    def row(x: _Image) -> dict[str, Any]:
        return {"digest": x.digest, "tags": x.tags, "pushed_at": x.pushed_at,
                "size": x.size}

    data = {"repository": repository, "region": where, "route": route, "keep": keep,
            "dry_run": dry_run, "kept": [row(x) for x in kept],
            "protected": [row(x) for x in protected],
            ("deleted" if deleted else "would_delete"): [row(x) for x in doomed],
            "failures": failed}
    if as_json:
        echo_json(data)
    else:
        verb = "deleted" if deleted else "would delete"
        rows = [[verb if x in doomed else ("kept (other tags)" if x in protected else "kept"),
                 ", ".join(x.tags), x.digest[:19], _when(x.pushed_at)]
                for x in [*kept, *protected, *doomed]]
        if rows:
            table(f"env images in {repository} ({route})",
                  ["action", "tags", "digest", "pushed / recorded (UTC)"], rows)
        summary = "deleted" if deleted else "to delete"
        click.echo(f"{len(doomed)} image(s) {summary}, {len(kept) + len(protected)} kept"
                   + (" (dry run: nothing deleted)" if dry_run else ""))
        for failure in failed:
            click.echo(f"failed: {failure}", err=True)
    if failed:
        raise SystemExit(1)
