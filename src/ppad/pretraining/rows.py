"""Arrays on disk read and written by rows, never mapped whole: what keeps pre-training's memory flat.

A :class:`RowFile` is a ``.npy`` file (readable by ``numpy.load``) whose rows are written and read
with positioned I/O (``pwrite``/``pread``). Unlike a memory map, rows read for a batch leave no
resident pages behind in the process, so peak RSS does not grow with the table: only the rows
asked for are ever in memory. Several processes may write disjoint rows of one file at once
(how the ranks of ``ppad pretrain --devices N`` fill the cache), and DataLoader workers may read
it concurrently: every process opens its own descriptor.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np


class RowFile:
    """A ``[rows, *row_shape]`` array of ``dtype`` in a ``.npy`` file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran:
            raise ValueError(f"{self.path}: a Fortran-ordered array cannot be read by rows")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = -1

    @classmethod
    def create(cls, path: str | Path, rows: int, row_shape: tuple[int, ...], dtype: str | np.dtype) -> RowFile:
        """A new file of ``rows`` zero rows (sparse on disk until written)."""
        np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(rows, *row_shape)).flush()
        return cls(path)

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:  # a DataLoader worker opens its own descriptor
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR), os.getpid()
        return self._fd

    def write(self, first: int, values: np.ndarray) -> None:
        """Rows ``first … first + len(values) - 1``."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape[1:] != self.shape[1:] or first < 0 or first + len(values) > len(self):
            raise ValueError(f"{self.path}: rows {first}+{len(values)} of {values.shape[1:]} do not fit {self.shape}")
        os.pwrite(self._descriptor(), values.tobytes(), self.offset + first * self.row_bytes)

    def read(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """The rows at ``rows`` (any order, repeats allowed), consecutive ones read together."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows) or not self.row_bytes:
            return out
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"{self.path}: rows outside 0…{len(self) - 1}")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), self.row_bytes)
        for run in np.split(np.arange(len(rows)), breaks):
            start = int(sorted_rows[run[0]])
            data = os.pread(self._descriptor(), self.row_bytes * len(run), self.offset + start * self.row_bytes)
            flat[order[run]] = np.frombuffer(data, dtype=np.uint8).reshape(len(run), self.row_bytes)
        return out

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def map_large_blocks(threshold: int = 1 << 18) -> None:
    """On glibc, serve allocations of ``threshold`` bytes and more by their own mappings, returned
    to the system when freed. Left to its dynamic threshold, glibc keeps a step's large tensors
    in the heap, which fragments: peak memory then grows with the number of steps (measured:
    +72 MiB for 3,500 more films in one epoch; flat with this)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl): its own policy
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, threshold)
