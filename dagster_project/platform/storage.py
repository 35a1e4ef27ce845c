"""fsspec-backed reads and atomic writes, so a URL can be a local path or ``s3://``."""

from __future__ import annotations

import io
import os
import uuid

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def storage_options(url: str) -> dict[str, object]:
    """fsspec options for ``url``: an ``s3://`` URL goes to ``MLOPS_S3_ENDPOINT_URL`` when set
    (any S3-compatible server); credentials come from the usual ``AWS_*`` variables."""
    endpoint = os.environ.get("MLOPS_S3_ENDPOINT_URL")
    if url.startswith(("s3://", "s3a://")) and endpoint:
        return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    return fs, path


def filesystem(url: str) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem that serves ``url`` (configured as :func:`storage_options` says),
    e.g. to register with DuckDB, which then reads ``s3://`` through it."""
    return _fs(url)[0]


def is_remote(url: str) -> bool:
    """Whether ``url`` names an object store (``s3://``...) rather than a local path."""
    return "://" in url and not url.startswith("file://")


def exists(url: str) -> bool:
    fs, path = _fs(url)
    return bool(fs.exists(path))


TMP_PREFIX = ".tmp-"


def list_files(url: str, suffix: str = "") -> list[str]:
    """Full URLs of the files directly under ``url`` (sorted), empty if it does not exist.
    Temporary files of writes in progress (or killed mid-write) are never listed."""
    fs, path = _fs(url)
    if not fs.exists(path):
        return []
    names = sorted(
        p
        for p in fs.ls(path, detail=False)
        if p.endswith(suffix) and not p.rsplit("/", 1)[-1].startswith(TMP_PREFIX)
    )
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    return [f"{protocol}{n}" if protocol and not n.startswith(protocol) else n for n in names]


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write to a temporary name beside the target, then rename: readers see the old file or
    the new one, never half of one, even if the writer is killed mid-write.

    Locally the data is fsynced before the rename (and the folder after it), so a power cut
    cannot leave a renamed but empty file either. The temporary name starts with ``.tmp-`` and
    ends in ``.partial``: no reader that globs the target's suffix picks up a leftover."""
    fs, path = _fs(url)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}.partial"
    if isinstance(fs, LocalFileSystem):
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def write_parquet(url: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes_atomic(url, buf.getvalue())


def read_parquet(url: str) -> pd.DataFrame:
    fs, path = _fs(url)
    with fs.open(path, "rb") as f:
        return pd.read_parquet(f)


def version(url: str) -> str:
    """What changes when the file at ``url`` is rewritten: its size and modification time (an
    object store's ETag where it gives one)."""
    fs, path = _fs(url)
    info = fs.info(path)
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return f"{info.get('size')}:{tag}"


def size(url: str) -> int:
    fs, path = _fs(url)
    return int(fs.size(path))


def read_bytes(url: str) -> bytes:
    fs, path = _fs(url)
    return bytes(fs.cat_file(path))


def upload_tree(folder: str | os.PathLike[str], url: str, once: tuple[str, ...] = ()) -> int:
    """Copy every file under the local ``folder`` to the same relative key under ``url``
    (each one atomically); files under the relative prefixes ``once`` (assets that never
    change) are skipped where the target already exists. Returns how many were copied."""
    root = os.fspath(folder)
    copied = 0
    for parent, _, files in os.walk(root):
        for name in files:
            local = os.path.join(parent, name)
            rel = os.path.relpath(local, root).replace(os.sep, "/")
            if once and rel.startswith(once) and exists(join(url, rel)):
                continue
            with open(local, "rb") as fh:
                write_bytes_atomic(join(url, rel), fh.read())
            copied += 1
    return copied
