"""The inputs of a model with several inputs: one array per input, by the input's name.

A split of such a model is a :class:`NamedInputs`: it has rows like an array (``len``,
an index array picks a subset, a slice reads rows), and the rows it reads are a dict
``{input name: array}``, which is what a Keras model takes for its inputs and how the
TFLite file's signature names them. Being a lazy split (``is_lazy``), it goes through
the code paths that already read inputs a batch at a time, so no call site has to know
how many inputs a model has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.tasks.lazy_rows import LazyRows, is_lazy


class NamedInputs(LazyRows):
    """Rows of several equally long inputs, each an array or a lazy split."""

    def __init__(self, arrays: dict[str, Any]) -> None:
        lengths = {name: len(values) for name, values in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"inputs of different lengths: {lengths}")
        self.arrays = dict(arrays)
        self.dtype = np.dtype(next(iter(arrays.values())).dtype)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        # One row's values over all inputs, flattened: what batch sizes are chosen by
        # (eager_predict); each input's own shape is in ``shapes``.
        return (sum(int(np.prod(shape)) for shape in self.shapes.values()),)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input's sample shape (without the batch axis)."""
        return {name: tuple(values.shape[1:]) for name, values in self.arrays.items()}

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            return {name: values[index] for name, values in self.arrays.items()}
        return super().__getitem__(index)

    def read(  # type: ignore[override]  # several inputs' rows: a dict, not one array
        self, rows: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The rows numbered ``rows`` of every input.

        Args:
            rows: row numbers, ``0..len-1``, in the order wanted.

        Returns:
            Input name -> an array of those rows (lazy inputs are read now).
        """
        return {
            name: values.read(rows) if is_lazy(values) else np.asarray(values[rows])
            for name, values in self.arrays.items()
        }

    def subset(self, rows: np.ndarray) -> NamedInputs:
        return NamedInputs({name: values[rows] for name, values in self.arrays.items()})

    def astype(self, dtype: Any, copy: bool = True) -> NamedInputs:
        """Float inputs cast to ``dtype``; integer inputs (token or category ids, which
        an Embedding takes) keep theirs. ``copy=True`` reads every row into memory.

        Args:
            dtype: the dtype for the float inputs.
            copy: False keeps lazy inputs lazy (cast as rows are read).

        Returns:
            New named inputs; this one is left as it is.
        """
        wanted = np.dtype(dtype)
        return NamedInputs(
            {
                name: _cast(values, wanted, copy)
                if np.issubdtype(values.dtype, np.floating)
                else (values if not copy else np.asarray(values[:]))
                for name, values in self.arrays.items()
            }
        )

    def with_dtypes(self, dtypes: dict[str, Any]) -> NamedInputs:
        """Each input cast (lazily where it is lazy) to the dtype its model input takes.

        Args:
            dtypes: input name -> dtype, for every input.

        Returns:
            New named inputs; this one is left as it is.
        """
        return NamedInputs(
            {name: _cast(values, np.dtype(dtypes[name]), False) for name, values in self.items()}
        )

    def with_dtype(self, dtype: Any) -> NamedInputs:
        """``astype(dtype, copy=False)``: float inputs cast lazily, integer ones kept.

        Args:
            dtype: the dtype for the float inputs.

        Returns:
            New named inputs; nothing is read.
        """
        return self.astype(dtype, copy=False)

    def items(self) -> Any:
        """Each input's values by name, as ``dict.items`` gives them.

        Returns:
            (name, array or lazy split) pairs, in the model's input order.
        """
        return self.arrays.items()

    def setflags(self, write: bool) -> None:
        """Set the writeable flag of every input held as an array (lazy ones have none).

        Args:
            write: False to make them read-only (inputs shared by every candidate).
        """
        for values in self.arrays.values():
            if isinstance(values, np.ndarray):
                values.setflags(write=write)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(f"inputs {', '.join(self.names)} are several arrays, not one")


def _cast(values: Any, dtype: np.dtype, copy: bool) -> Any:
    if is_lazy(values):
        return values.astype(dtype, copy=copy)
    return np.asarray(values).astype(dtype, copy=copy)


def input_names(model: Any) -> tuple[str, ...]:
    """The model's input names, in the order of ``model.inputs``.

    Args:
        model: a Keras model.

    Returns:
        The names the data's ``x_<split>_<input>`` arrays and the TFLite signature use.
    """
    return tuple(tensor.name for tensor in model.inputs)


def has_several_inputs(x: Any) -> bool:
    """Whether ``x`` is the inputs of a model with several inputs.

    Args:
        x: a split's inputs.

    Returns:
        True for :class:`NamedInputs`, False for an array or a one-input lazy split.
    """
    return isinstance(x, NamedInputs)


def rows_of_one(x: Any, count: int) -> list[Any]:
    """The first ``count`` rows of ``x``, each as a batch of one: an array, or for several
    inputs a dict by input name (as a TFLite signature takes them).

    Args:
        x: a split's inputs: an array, a lazy split or :class:`NamedInputs`.
        count: how many rows at most.

    Returns:
        One item per row, ``min(count, len(x))`` of them; every row is read.
    """
    head = x[:count]
    if isinstance(head, dict):
        rows = len(next(iter(head.values())))
        return [{name: values[i : i + 1] for name, values in head.items()} for i in range(rows)]
    return [row[None, ...] for row in np.asarray(head)]


def first_rows(x: Any, count: int) -> Any:
    """The first ``count`` rows of ``x`` as the same kind of split (an array stays an
    array, several inputs stay :class:`NamedInputs`).

    Args:
        x: a split's inputs.
        count: how many rows at most.

    Returns:
        At most ``count`` rows: a :class:`NamedInputs` subset is not read; a one-input
        lazy split is read into an array.
    """
    if has_several_inputs(x):
        return x[np.arange(min(count, len(x)))]
    return x[:count]


def feed(x: Any) -> Any:
    """``x`` as a Keras model takes it in one call: the array, or a dict by input name.

    Args:
        x: a split's inputs.

    Returns:
        ``x`` itself, or for several inputs every row read, as a dict by input name.
    """
    return x[:] if has_several_inputs(x) else x


def content_digest(x: Any) -> str:
    """A SHA-1 of ``x``'s dtype, shape and values (every input's, by name, for several
    inputs).

    Args:
        x: inputs to key a cache by: an array, a lazy split or :class:`NamedInputs` (lazy
            ones are read whole).

    Returns:
        The hex digest: equal inputs give equal digests in any process.
    """
    import hashlib

    digest = hashlib.sha1()
    for name, values in x.items() if has_several_inputs(x) else [("", x)]:
        digest.update(f"{name}{values.dtype}{values.shape}".encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()
