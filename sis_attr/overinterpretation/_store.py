"""The shard store: backward-selection results written to disk as they are computed (private).

A checkpoint directory holds one ``manifest.json`` and one file per finished shard (a contiguous range of
images): ``shard-000012-<sha256>.npz``, NumPy arrays without pickles (the results, and a small JSON record of the
image range, the hash of the shard's images and the compute time), whose SHA-256 is in its name. Every file is
written to a temporary name, flushed to disk (``fsync``), renamed into place and the directory synced: a shard
counts as finished only when a file of that name exists and its checksum matches the name. Anything else (a
partial or corrupted shard, a leftover temporary file) is removed and the shard recomputed.

The manifest records what the results depend on: the model (a hash of its state dict), the data (image count,
shape and, per shard, a hash of the images), the method and its parameters, the feature mask, the baselines,
the targets, the storage dtypes, the shard size and the package version. A rerun with the same identity
skips the finished shards; any difference is refused with a message naming it, so results of two models,
data sets or parameter sets are never mixed.

Storage is compact: removal orders in the smallest unsigned integer type that holds a feature id, scores
(log-probabilities) in float32 or float16 when asked (float64 otherwise), targets in the smallest integer type.
Readers load one shard at a time (:meth:`ShardStore.read`), so memory follows the shard, not the data set.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISTypeError, SISValueError

__all__: list[str] = []

STORE_VERSION = 1
"""Version of the layout of a checkpoint directory."""

MANIFEST = "manifest.json"
LOCK = ".lock"
SCORE_DTYPES = ("float64", "float32", "float16")
"""Storage dtypes of the scores, most precise first."""

_ARRAYS = ("orders", "values", "targets", "confidences", "probabilities")
_TMP = ".tmp-"


# ------------------------------------------------------------------------------------------------ hashing
def smallest_uint(max_value: int) -> np.dtype[Any]:
    """The smallest unsigned integer dtype holding ``0..max_value`` (uint8 for up to 256 features)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def tensor_sha256(tensor: Tensor, digest: Any = None) -> str:
    """SHA-256 of a tensor's dtype, shape and values (on the CPU, contiguous); updates ``digest`` if given."""
    h = digest if digest is not None else hashlib.sha256()
    t = tensor.detach().cpu()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        flat = t.reshape(-1)
        if flat.stride(0) != 1:  # a broadcast view: copy it into dense memory
            flat = flat.new_empty(flat.shape).copy_(flat)
        h.update(cast(Any, flat.view(torch.uint8).numpy()))  # the buffer, not a copy
    return str(h.hexdigest())


def compact_tensor(tensor: Tensor) -> Tensor:
    """The smallest tensor a broadcast view was expanded from (stride-0 dimensions narrowed to size 1)."""
    t = tensor
    for dim, stride in enumerate(t.stride()):
        if stride == 0 and t.shape[dim] > 1:
            t = t.narrow(dim, 0, 1)
    return t


def model_sha256(model: nn.Module) -> str:
    """A hash of the model's identity: its class and its state dict (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(value, Tensor):
            tensor_sha256(value, h)
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def images_sha256(images: Tensor) -> str:
    """SHA-256 of a block of images as float32 values (how a shard's data are identified)."""
    return tensor_sha256(images.detach().to(torch.float32))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ files
def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, fsync it and rename it to ``path`` (atomic)."""
    tmp = path.with_name(f"{path.name}{_TMP}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------ identity
def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys (dotted) where two identities differ, with both values (short)."""

    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 40 else text[:37] + "..."

    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(f"{key}.{d}" for d in describe_difference(a, b))
        elif a != b:
            out.append(f"{key} ({short(a)} there, {short(b)} now)")
    return out


_WHAT = {
    "model": "another model",
    "data": "other data",
    "method": "another method",
    "parameters": "other parameters",
    "package_version": "another version of sis_attr",
    "storage": "another storage format",
}


@dataclass
class ShardStore:
    """An open checkpoint directory (see the module docstring); make it with :meth:`open` or :meth:`existing`."""

    directory: Path
    manifest: dict[str, Any]
    caller: str
    _lock: Any = None

    # -------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], identity: dict[str, Any], *, shard_size: int, caller: str
    ) -> ShardStore:
        """Create the store (or open an existing one with the same ``identity``), lock it and clean it.

        ``identity`` is JSON-ready and holds ``n_images``; every key is compared with the manifest's on reopening.
        """
        path = _format_directory(directory, caller)
        manifest_path = path / MANIFEST
        if path.exists() and not manifest_path.is_file():
            if any(True for p in path.iterdir() if p.name != LOCK):
                raise SISValueError(
                    f"The `checkpoint_dir` of {caller} must be a new or empty directory, or one written by a previous "
                    f"run. Got {str(path)!r}, which holds other files (no {MANIFEST}) instead."
                )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SISValueError(f"{caller} cannot create the checkpoint directory {str(path)!r}: {err}") from err
        lock = _lock_directory(path, caller)
        try:
            n = int(identity["n_images"])
            fresh = {
                "generator": "sis_attr",
                "kind": "backward-selection shards",
                "store_version": STORE_VERSION,
                "identity": identity,
                "shard_size": shard_size,
                "n_shards": max(1, math.ceil(n / shard_size)),
                "complete": False,
            }
            if manifest_path.is_file():
                manifest = _read_manifest(path, caller)
                _check_identity(path, manifest, identity, shard_size, caller)
            else:
                manifest = fresh
                write_atomic(manifest_path, _json_bytes(manifest))
            store = cls(path, manifest, caller, lock)
            store._clean()
            return store
        except BaseException:
            _unlock(lock)
            raise

    @classmethod
    def existing(cls, directory: str | os.PathLike[str], caller: str) -> ShardStore:
        """Open a store for reading only (no lock): its manifest must exist."""
        path = _format_directory(directory, caller)
        if not (path / MANIFEST).is_file():
            raise SISValueError(
                f"{caller}: {str(path)!r} is not a checkpoint directory written by sis_attr (it has no {MANIFEST})."
            )
        return cls(path, _read_manifest(path, caller), caller)

    def close(self) -> None:
        """Release the lock (the store stays on disk)."""
        _unlock(self._lock)
        self._lock = None

    def __enter__(self) -> ShardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------------- layout
    @property
    def identity(self) -> dict[str, Any]:
        return dict(self.manifest["identity"])

    @property
    def n_images(self) -> int:
        return int(self.manifest["identity"]["n_images"])

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    @property
    def n_shards(self) -> int:
        return int(self.manifest["n_shards"])

    def bounds(self, index: int) -> tuple[int, int]:
        """``(start, stop)`` image range of shard ``index``."""
        start = index * self.shard_size
        return start, min(self.n_images, start + self.shard_size)

    def _candidates(self, index: int) -> list[Path]:
        return sorted(self.directory.glob(f"shard-{index:06d}-*.npz"))

    def _clean(self) -> None:
        """Remove temporary files left by an interrupted write."""
        for p in self.directory.iterdir():
            if _TMP in p.name and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()

    # -------------------------------------------------------------------------------------------- shards
    def entry(self, index: int) -> dict[str, Any] | None:
        """The record of shard ``index`` if it is finished and intact, else None (damaged files are removed)."""
        found = None
        for path in self._candidates(index):
            meta = self._verified(path, index)
            if meta is not None and found is None:
                found = meta
            else:  # corrupted, or a second copy: recompute / keep one
                with contextlib.suppress(OSError):
                    path.unlink()
        return found

    def _verified(self, path: Path, index: int) -> dict[str, Any] | None:
        try:
            if _file_sha256(path) != path.stem.rsplit("-", 1)[-1]:
                return None
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if not isinstance(meta, dict) or meta.get("shard") != index:
            return None
        if [meta.get("start"), meta.get("stop")] != list(self.bounds(index)):
            return None
        return {**meta, "file": path.name}

    def finished(self) -> dict[int, dict[str, Any]]:
        """The records of the finished, intact shards (corrupted ones are removed)."""
        out = {}
        for i in range(self.n_shards):
            meta = self.entry(i)
            if meta is not None:
                out[i] = meta
        return out

    def write(self, index: int, arrays: Mapping[str, np.ndarray], *, data_sha256: str, seconds: float) -> None:
        """Write shard ``index`` (arrays in their storage dtypes) as one checksummed file."""
        start, stop = self.bounds(index)
        for name, arr in arrays.items():
            if arr.shape[0] != stop - start:
                raise RuntimeError(f"shard {index}: {name} has {arr.shape[0]} rows for images {start}..{stop}")
        meta = {"shard": index, "start": start, "stop": stop, "data_sha256": data_sha256, "seconds": round(seconds, 6)}
        buf = io.BytesIO()
        np.savez(
            buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8), **cast(dict[str, Any], arrays)
        )
        data = buf.getvalue()
        path = self.directory / f"shard-{index:06d}-{hashlib.sha256(data).hexdigest()}.npz"
        write_atomic(path, data)
        for other in self._candidates(index):
            if other != path:
                with contextlib.suppress(OSError):
                    other.unlink()

    def read(self, index: int) -> dict[str, np.ndarray]:
        """The arrays of finished shard ``index``, checksum verified (one shard in memory at a time)."""
        meta = self.entry(index)
        if meta is None:
            raise SISValueError(
                f"{self.caller}: shard {index} of the checkpoint {str(self.directory)!r} is missing or corrupted "
                "(its checksum does not match). Rerun the computation with this checkpoint directory: it recomputes "
                "only the missing shards."
            )
        path = self.directory / meta["file"]
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files if name != "meta"}
        except (OSError, ValueError) as err:
            raise SISValueError(f"{self.caller} could not read {str(path)!r}: {err}") from err
        missing = [a for a in _ARRAYS if a not in arrays]
        if missing:
            raise SISValueError(f"{self.caller}: {str(path)!r} lacks the arrays {missing}.")
        return arrays

    def iter_shards(self) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """``(start, stop, arrays)`` of every shard in order, one in memory at a time (all must be finished)."""
        for i in range(self.n_shards):
            start, stop = self.bounds(i)
            yield start, stop, self.read(i)

    def write_array(self, name: str, array: np.ndarray) -> None:
        """Write ``name.npy`` once (an array the identity already covers by its hash, e.g. the feature mask)."""
        path = self.directory / f"{name}.npy"
        if path.is_file():
            return
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        write_atomic(path, buf.getvalue())

    def read_array(self, name: str) -> np.ndarray:
        path = self.directory / f"{name}.npy"
        try:
            return np.asarray(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise SISValueError(f"{self.caller} could not read {str(path)!r}: {err}") from err

    def mark_complete(self, shard_hashes: list[str]) -> None:
        """Record that every shard is finished, with the hash of the whole data set (from the shards' hashes)."""
        h = hashlib.sha256()
        for s in shard_hashes:
            h.update(s.encode())
        self.manifest = {**self.manifest, "complete": True, "data_sha256": h.hexdigest()}
        write_atomic(self.directory / MANIFEST, _json_bytes(self.manifest))


# ------------------------------------------------------------------------------------------------ helpers
def _format_directory(directory: object, caller: str) -> Path:
    if not isinstance(directory, (str, os.PathLike)) or str(directory) == "":
        raise SISTypeError(
            f"The `checkpoint_dir` parameter of {caller} must be None or a path. Got {directory!r} instead."
        )
    path = Path(directory).expanduser()
    if path.exists() and not path.is_dir():
        raise SISValueError(
            f"The `checkpoint_dir` parameter of {caller} must be a directory. Got {str(path)!r}, a file, instead."
        )
    return path


def _read_manifest(path: Path, caller: str) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SISValueError(
            f"{caller}: the manifest of the checkpoint {str(path)!r} is unreadable ({err}). Delete the directory to "
            "start over."
        ) from err
    if not isinstance(manifest, dict) or manifest.get("generator") != "sis_attr" or "identity" not in manifest:
        raise SISValueError(f"{caller}: {str(path)!r} holds a {MANIFEST} that sis_attr did not write.")
    if manifest.get("store_version") != STORE_VERSION:
        raise SISValueError(
            f"{caller}: the checkpoint {str(path)!r} has layout version {manifest.get('store_version')}; this "
            f"version of sis_attr reads version {STORE_VERSION}. Use another directory."
        )
    return manifest


def _check_identity(
    path: Path, manifest: Mapping[str, Any], identity: Mapping[str, Any], shard_size: int, caller: str
) -> None:
    old = dict(manifest["identity"])
    diffs = describe_difference(old, dict(identity))
    if int(manifest.get("shard_size", -1)) != shard_size:
        diffs.append(f"shard_size ({manifest.get('shard_size')} there, {shard_size} now)")
    if not diffs:
        return
    kinds = sorted({_WHAT.get(d.split(".")[0].split(" ")[0], "other settings") for d in diffs})
    raise SISValueError(
        f"{caller} will not mix results: the checkpoint directory {str(path)!r} holds results of "
        f"{' and '.join(kinds)} (differences: {'; '.join(diffs[:4])}{'; ...' if len(diffs) > 4 else ''}). "
        "Use another checkpoint directory, or delete this one to start over."
    )


def _lock_directory(path: Path, caller: str) -> Any:
    """An exclusive advisory lock on ``path/.lock`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        return None
    f = open(path / LOCK, "a+b")  # held for the store's lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SISValueError(
            f"{caller}: another run is writing to the checkpoint directory {str(path)!r}. Wait for it to finish, "
            "or use another directory."
        ) from None
    return f


def _unlock(lock: Any) -> None:
    if lock is not None:
        with contextlib.suppress(OSError):
            lock.close()
