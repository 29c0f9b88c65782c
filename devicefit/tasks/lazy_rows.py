"""A split's inputs read a batch at a time, for data larger than memory.

An integer or a slice gives arrays (what batch loops read); an array of indices or a
mask gives another lazy split (a subset, still not read), so a task can pick subsets
(fine-tuning's, calibration's) without loading the whole split. Code that needs every
row at once checks :func:`is_lazy` and goes batch by batch instead.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np


class LazyRows:
    """Rows ``0..len-1`` of a split; subclasses say how to read given rows."""

    dtype: np.dtype

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def sample_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows numbered ``rows`` (in that order) as one array of ``dtype``.

        Args:
            rows: row numbers of this split, ``0..len-1``.

        Returns:
            A new array of shape ``(len(rows), *sample_shape)``.
        """
        raise NotImplementedError

    def subset(self, rows: np.ndarray) -> LazyRows:
        """The rows numbered ``rows`` as another lazy split.

        Args:
            rows: row numbers of this split, ``0..len-1``; they become rows ``0..`` of the
                subset, in that order.

        Returns:
            A lazy split of the same kind and dtype; nothing is read.
        """
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            row = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {index} of {len(self)}")
            return self.read(np.array([row]))[0]
        if isinstance(index, slice):
            return self.read(np.arange(len(self))[index])
        picked = np.asarray(index)
        if picked.ndim != 1 or picked.dtype.kind not in "biu":
            raise IndexError(f"rows are indexed by an int, a slice or 1-d indices, not {index!r}")
        if picked.dtype == bool:
            if len(picked) != len(self):
                raise IndexError(f"a mask of {len(picked)} for {len(self)} rows")
            picked = np.flatnonzero(picked)
        return self.subset(np.arange(len(self))[picked])

    def astype(self, dtype: Any, copy: bool = True) -> Any:
        """``copy=False`` (how a task casts its splits) stays lazy, cast as rows are read;
        a copy reads every row.

        Args:
            dtype: the dtype rows are to have.
            copy: False to stay lazy; True reads the whole split into memory.

        Returns:
            A lazy split (``copy=False``), else an array of every row.
        """
        if not copy:
            return self.with_dtype(dtype)
        return self[:].astype(dtype)

    def with_dtype(self, dtype: Any) -> LazyRows:
        """This split with its rows read as ``dtype``; nothing is read now.

        Args:
            dtype: the dtype rows are cast to as they are read.

        Returns:
            A shallow copy (it shares this split's files or paths).
        """
        other = copy.copy(self)
        other.dtype = np.dtype(dtype)
        return other

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is a lazy split (read a batch at a time) rather than an array.

    Args:
        x: a split's inputs.

    Returns:
        True for any :class:`LazyRows` (loader files, image folders, several inputs).
    """
    return isinstance(x, LazyRows)


class DiskRows(LazyRows):
    """Rows of a raw array file (C order, no header): only the rows indexed are read,
    so a process holds a batch, never the file. Not a memory map: mapped pages count as
    the reader's resident memory until the kernel reclaims them, which would make a
    split read once look as if it were held. The file stays open while any of its rows
    (subsets included) may be read, so removing it does not pull it from under them."""

    def __init__(
        self,
        path: str,
        stored: Any,
        sample_shape: tuple[int, ...],
        rows: np.ndarray | int,
        dtype: Any = None,
        file: Any = None,
    ) -> None:
        self.path = path
        self.file = file or open(path, "rb")  # noqa: SIM115 - shared by subsets, closed by GC
        self.stored = np.dtype(stored)
        self._sample_shape = tuple(sample_shape)
        self.rows = np.arange(rows) if isinstance(rows, int) else rows
        self.dtype = np.dtype(dtype or stored)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self._sample_shape

    def read(self, rows: np.ndarray) -> np.ndarray:
        wanted = self.rows[rows]
        out = np.empty((len(wanted), *self._sample_shape), self.stored)
        size = self.stored.itemsize * int(np.prod(self._sample_shape, dtype=np.int64))
        order = np.argsort(wanted, kind="stable")
        ordered = wanted[order]
        # Runs of consecutive rows are one read each (a slice is one read in all).
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        for run in np.split(np.arange(len(ordered)), breaks):
            if len(run):
                data = self._read_at(int(ordered[run[0]]) * size, size * len(run))
                values = np.frombuffer(data, self.stored).reshape(len(run), *self._sample_shape)
                out[order[run]] = values
        return out.astype(self.dtype, copy=False)

    def _read_at(self, offset: int, count: int) -> bytes:
        """``count`` bytes from ``offset``: in parts, as one read stops near 2 GiB."""
        parts, done = [], 0
        while done < count:
            if hasattr(os, "pread"):
                part = os.pread(self.file.fileno(), count - done, offset + done)
            else:  # Windows: no pread; reads come from one thread (Keras's default)
                self.file.seek(offset + done)
                part = self.file.read(count - done)
            if not part:
                raise OSError(f"{self.path} ends at byte {offset + done}, before row data")
            parts.append(part)
            done += len(part)
        return b"".join(parts)

    def subset(self, rows: np.ndarray) -> DiskRows:
        return DiskRows(
            self.path, self.stored, self._sample_shape, self.rows[rows], self.dtype, self.file
        )
