"""``.npz`` files: written as bytes (:func:`npz_bytes`, then :func:`~sims.sweep.atomic.atomic_write_bytes`)
and read back checked (:func:`read_npz`), whoever made them.

A file from elsewhere (a damaged chunk file, a user's point sets) must not crash the reader
or fill the memory. :func:`read_npz` therefore checks every array before reading it and
refuses, in one line naming the array: one larger than the limit once decompressed (the
size the archive records), one whose ``.npy`` header claims more bytes than the archive
holds (a header that claims shape ``(10**11, 2)``, 1.46 TiB, in a file of a few bytes), an
array of Python objects (pickles), and a damaged archive (a flipped byte in compressed data,
a bad CRC, a truncated member), with the true reason.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from numpy.lib import format as npy

#: the largest array :func:`read_npz` reads by default (its size once decompressed).
MAX_ARRAY_BYTES = 2**31


class NpzError(ValueError):
    """Why an ``.npz`` file cannot be read: one line, without the file's path."""


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of ``np.savez(**arrays)`` (uncompressed, no pickles needed)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy.read_magic(f)
    if version == (1, 0):
        return npy.read_array_header_1_0(f)
    if version == (2, 0):
        return npy.read_array_header_2_0(f)
    if version == (3, 0) and hasattr(npy, "_read_array_header"):
        return npy._read_array_header(f, version)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")


def _read_member(archive: zipfile.ZipFile, member: str, name: str, max_bytes: int) -> np.ndarray:
    info = archive.getinfo(member)
    if info.file_size > max_bytes:
        raise NpzError(f"array {name!r} holds {info.file_size:,} bytes, at most {max_bytes:,} "
                       "(memory), once decompressed")
    try:
        with archive.open(member) as f:
            try:
                shape, _, dtype = _header(f)
            except (zipfile.BadZipFile, zlib.error, OSError):
                raise
            except Exception as exc:  # numpy parses the header text: SyntaxError, TokenError, ...
                why = " ".join(str(exc).split())[:80] or type(exc).__name__
                raise NpzError(f"array {name!r} has no valid .npy header ({why})") from None
            if dtype.hasobject:
                raise NpzError(f"array {name!r} holds Python objects; pickles are refused")
            need = math.prod(shape) * dtype.itemsize  # what read_array would allocate
            held = info.file_size - f.tell()
            if need > held:
                raise NpzError(f"array {name!r} is damaged: its header claims shape {shape} of "
                               f"{dtype} ({need:,} bytes), the archive holds {max(held, 0):,}")
        with archive.open(member) as f:  # checked: now read it (read_array reads the header again)
            return npy.read_array(f, allow_pickle=False)
    except NpzError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        why = " ".join(str(exc).split())[:80] or type(exc).__name__
        kind = "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__
        raise NpzError(f"array {name!r} is damaged ({kind}: {why})") from None


def read_npz(path: str | Path, names: Sequence[str] | None = None,
             max_bytes: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """The arrays ``names`` (default: every array) of an ``.npz`` file, each checked before
    it is read (see the module): no array larger than ``max_bytes`` once decompressed.

    Members that are not ``.npy`` arrays are ignored.

    Raises:
      FileNotFoundError: no such file.
      NpzError: one line (without the path) saying what is wrong.
      OSError: the file cannot be opened.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            found = [m[:-4] for m in archive.namelist() if m.endswith(".npy")]
            missing = [n for n in names or () if n not in found]
            if missing:
                raise NpzError(f"missing array {missing[0]!r} (found: {', '.join(found) or 'none'})")
            return {n: _read_member(archive, f"{n}.npy", n, max_bytes) for n in names or found}
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise NpzError(f"truncated or not an .npz archive: {type(exc).__name__}") from None
    except ValueError as exc:
        if isinstance(exc, NpzError):
            raise
        raise NpzError(f"unreadable .npz archive: {type(exc).__name__}: {str(exc)[:80]}") from None
