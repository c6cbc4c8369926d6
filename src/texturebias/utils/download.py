"""Downloads that can be trusted: a hash check before a file gets its final name, and one cache root.

Everything texturebias fetches (weights, data archives, distortion tables) goes through
:func:`download_file` into ``$TEXTUREBIAS_HOME`` (default ``~/.cache/texturebias``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from texturebias.errors import DownloadError
from texturebias.utils.progress import progress

#: What an offline user should do instead of a download, by kind ("weights", "data"); set per command by the CLI.
_OFFLINE_HINTS: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "offline_hints", default=()
)

DEFAULT_WEIGHTS_HINT = "pass the file with --checkpoint PATH"


@contextlib.contextmanager
def offline_hints(**hints: str) -> Iterator[None]:
    """Within the block, failed downloads suggest these local alternatives (``weights=``, ``data=``).

    Each command names its own flags (``stylize``: ``--vgg``/``--decoder``; ``correlate``:
    ``--checkpoint-a``/``--checkpoint-b``; ``benchmark``: ``--data``), so the message never names a flag the
    command lacks. Library code deep below (model factory, data registry) reads them with :func:`offline_hint`.
    """
    merged = {**dict(_OFFLINE_HINTS.get()), **{k: v for k, v in hints.items() if v}}
    token = _OFFLINE_HINTS.set(tuple(merged.items()))
    try:
        yield
    finally:
        _OFFLINE_HINTS.reset(token)


def offline_hint(kind: str, default: str) -> str:
    """The hint of :func:`offline_hints` for ``kind`` ("weights" or "data"), else ``default``."""
    return dict(_OFFLINE_HINTS.get()).get(kind, default)


def texturebias_home() -> Path:
    """Root of texturebias' cache: ``$TEXTUREBIAS_HOME`` or ``~/.cache/texturebias``."""
    env = os.environ.get("TEXTUREBIAS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "texturebias"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_hash(digest: str, *, sha256: str | None, hash_prefix: str | None, what: str) -> None:
    """Raise :class:`DownloadError` when ``digest`` does not match the expected hash."""
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(f"{what}: sha256 mismatch (expected {sha256}, got {digest}); file refused")
    if hash_prefix is not None and not digest.startswith(hash_prefix.lower()):
        raise DownloadError(f"{what}: sha256 {digest} does not start with {hash_prefix}; file refused")


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    hash_prefix: str | None = None,
    timeout: float = 30.0,
    show_progress: bool = True,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the hash before the file gets its final name.

    A failed download or a hash mismatch leaves nothing at ``dest``.

    Args:
        url: What to fetch.
        dest: Final path.
        sha256: Expected full hash.
        hash_prefix: Expected leading hex digits of the hash (torchvision-style file names).
        timeout: Socket timeout in seconds.
        show_progress: Show a progress bar.
        hint: How to do without the download, for the offline message ("pass the file with --vgg PATH");
            default: the command's :func:`offline_hints` for weights, else ``--checkpoint PATH``.

    Raises:
        DownloadError: network failure (with a hint to pass a local file) or hash mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (URLs are declared data)
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    bar = progress(total=total, desc=f"download {dest.name}", unit="B", disable=not show_progress)
                    with bar:
                        while block := resp.read(1 << 20):
                            out.write(block)
                            h.update(block)
                            bar.update(len(block))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                advice = hint or offline_hint("weights", DEFAULT_WEIGHTS_HINT)
                raise DownloadError(
                    f"could not download {url} ({reason}). If this machine is offline, download the file "
                    f"elsewhere and {advice} (or place it at {dest})."
                ) from None
        check_hash(h.hexdigest(), sha256=sha256, hash_prefix=hash_prefix, what=url)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
