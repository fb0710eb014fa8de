"""Python bindings of entropix-sampler over its C ABI (ctypes; no compiled
extension).

Every sampler of the library is built by name with keyword parameters (the
C field names) and applied to NumPy logits, so it works as a logits
processor in any Python generation loop::

    import numpy as np
    from entropix_sampler import Chain, Sampler

    chain = Chain([Sampler("top_k", k=40), Sampler("temperature", temp=0.7), Sampler("dist", seed=1)])
    token = chain.sample(logits)          # logits: one row of the model's output, float32
    entropix = Sampler("entropix", seed=7)
    token = entropix.sample(logits)
    entropix.state()["last_step"]["strategy"]   # "flowing", "treading", ...

The shared library is found, in order, at ``$ENTROPIX_SAMPLER_LIB``, in
the ``target/release`` of a checkout around the package or around the
working directory, and on the system's library path (after
``scripts/install.sh`` into a prefix the loader searches).
Errors of the library raise :class:`EntropixError` with the message of
``entropix_last_error()``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["EntropixError", "Sampler", "Chain", "Result", "SAMPLER_NAMES", "version", "library_path"]


#: The layout of ``llama_token_data``: id, logit, p.
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class EntropixError(RuntimeError):
    """An error reported by the library (its ``entropix_last_error()``)."""


class _TokenDataArray(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("selected", ctypes.c_int64),
        ("sorted", ctypes.c_bool),
    ]


def _candidates() -> List[Path]:
    here = Path(__file__).resolve()
    out = []
    env = os.environ.get("ENTROPIX_SAMPLER_LIB")
    if env:
        out.append(Path(env))
    # A checkout: around the package's own files (used in place), or
    # around the working directory (the package installed with pip, run
    # from the repository).
    for start in (here, Path.cwd() / "x"):
        for parent in start.parents:
            lib = parent / "target" / "release" / "libentropix_sampler.so"
            if lib.exists():
                out.append(lib)
                break
    found = ctypes.util.find_library("entropix_sampler")
    if found:
        out.append(Path(found))
    return out


def _load() -> ctypes.CDLL:
    tried = _candidates()
    for path in tried:
        try:
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    raise ImportError(
        "libentropix_sampler not found (tried: "
        + (", ".join(map(str, tried)) or "nothing")
        + "); build it with `cargo build --release --lib` or set ENTROPIX_SAMPLER_LIB"
    )


_lib = _load()
_P = ctypes.c_void_p
_lib.entropix_sampler_json_names.argtypes = []
_lib.entropix_sampler_json_names.restype = ctypes.c_char_p
_lib.entropix_sampler_init_json.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_lib.entropix_sampler_init_json.restype = _P
_lib.entropix_last_error.argtypes = []
_lib.entropix_last_error.restype = ctypes.c_char_p
_lib.entropix_version.argtypes = []
_lib.entropix_version.restype = ctypes.c_char_p
_lib.entropix_sampler_state_json.argtypes = [_P, ctypes.c_char_p, ctypes.c_size_t]
_lib.entropix_sampler_state_json.restype = ctypes.c_size_t
_lib.entropix_sampler_needs_attention.argtypes = [_P]
_lib.entropix_sampler_needs_attention.restype = ctypes.c_bool
# llama.cpp's sampler interface, from libllama (a dependency of the library).
_lib.llama_sampler_apply.argtypes = [_P, ctypes.POINTER(_TokenDataArray)]
_lib.llama_sampler_apply.restype = None
_lib.llama_sampler_accept.argtypes = [_P, ctypes.c_int32]
_lib.llama_sampler_accept.restype = None
_lib.llama_sampler_reset.argtypes = [_P]
_lib.llama_sampler_reset.restype = None
_lib.llama_sampler_clone.argtypes = [_P]
_lib.llama_sampler_clone.restype = _P
_lib.llama_sampler_free.argtypes = [_P]
_lib.llama_sampler_free.restype = None
_lib.llama_sampler_name.argtypes = [_P]
_lib.llama_sampler_name.restype = ctypes.c_char_p


#: The names :class:`Sampler` accepts (``-`` may stand for ``_``), as the
#: library lists them.
SAMPLER_NAMES = tuple(_lib.entropix_sampler_json_names().decode().split(","))


def library_path() -> str:
    """The path of the loaded shared library."""
    return _lib._name


def version() -> str:
    """The library's version."""
    return _lib.entropix_version().decode()


def _last_error(fallback: str) -> str:
    msg = _lib.entropix_last_error()
    return msg.decode("utf-8", "replace") if msg else fallback


@dataclass
class Result:
    """What applying a sampler (or chain) to one row of logits gave."""

    #: The logits after the samplers, full vocabulary: removed tokens are -inf.
    logits: np.ndarray
    #: The selected token, when a sampler selected one.
    token: Optional[int]
    #: The candidate array as the samplers left it (fields id, logit, p).
    candidates: np.ndarray


def _as_candidates(logits: Any) -> np.ndarray:
    row = np.asarray(logits, dtype=np.float32)
    if row.ndim != 1:
        raise ValueError(f"logits must be one row (1-D), not shape {row.shape}")
    cands = np.empty(row.shape[0], dtype=TOKEN_DATA)
    cands["id"] = np.arange(row.shape[0], dtype=np.int32)
    cands["logit"] = row
    cands["p"] = 0.0
    return cands


def _run(handles: Sequence[int], logits: Any) -> Result:
    cands = _as_candidates(logits)
    usable = cands["logit"]
    if not np.any(np.isfinite(usable) | (usable == np.inf)):
        # The library would select index 0 and record an error (a selecting
        # llama.cpp sampler must select); Python gets an exception instead.
        raise EntropixError("the logits have no finite value (all NaN or -inf): nothing to sample")
    n_vocab = cands.shape[0]
    arr = _TokenDataArray(cands.ctypes.data, cands.shape[0], -1, False)
    for h in handles:
        _lib.llama_sampler_apply(h, ctypes.byref(arr))
    size = int(arr.size)
    if size > 0:
        buf = (ctypes.c_char * (size * TOKEN_DATA.itemsize)).from_address(arr.data)
        final = np.frombuffer(buf, dtype=TOKEN_DATA, count=size).copy()
    else:
        final = np.empty(0, dtype=TOKEN_DATA)
    out = np.full(n_vocab, -np.inf, dtype=np.float32)
    ids = final["id"]
    ok = (ids >= 0) & (ids < n_vocab)
    out[ids[ok]] = final["logit"][ok]
    sel = int(arr.selected)
    token = int(final["id"][sel]) if 0 <= sel < size else None
    return Result(out, token, final)


class Sampler:
    """One sampler of the library, built by name with its parameters.

    ``Sampler("entropix", seed=7, temp=0.5)``; ``preset="reference"`` gives
    the seeds' values for entropix, four_mode, alpha and dirichlet. Raises
    :class:`EntropixError` for an unknown name or parameter, or a value out
    of range.
    """

    def __init__(self, name: str, **params: Any) -> None:
        self._h = _lib.entropix_sampler_init_json(name.encode(), json.dumps(params).encode())
        if not self._h:
            raise EntropixError(_last_error(f"cannot create sampler {name!r}"))
        self.family = name

    @classmethod
    def _wrap(cls, handle: int, family: str) -> "Sampler":
        s = cls.__new__(cls)
        s._h = handle
        s.family = family
        return s

    def _handle(self) -> int:
        if not self._h:
            raise EntropixError("the sampler was closed")
        return self._h

    @property
    def name(self) -> str:
        """The sampler's name as llama.cpp reports it."""
        return _lib.llama_sampler_name(self._handle()).decode()

    @property
    def needs_attention(self) -> bool:
        """Whether the sampler reads attention (it then follows its
        documented fallback here, where no model attention is captured)."""
        return bool(_lib.entropix_sampler_needs_attention(self._handle()))

    def apply(self, logits: Any) -> Result:
        """Applies the sampler to one row of logits (not accepted)."""
        return _run([self._handle()], logits)

    def sample(self, logits: Any) -> int:
        """Applies, checks that a token was selected, accepts it, returns it."""
        return Chain._sample_with([self], logits)

    def accept(self, token: int) -> None:
        """Tells the sampler which token was chosen."""
        _lib.llama_sampler_accept(self._handle(), int(token))

    def reset(self) -> None:
        _lib.llama_sampler_reset(self._handle())

    def clone(self) -> "Sampler":
        return Sampler._wrap(_lib.llama_sampler_clone(self._handle()), self.family)

    def state(self) -> Dict[str, Any]:
        """The sampler's state and last step (``entropix_sampler_state_json``)."""
        h = self._handle()
        n = _lib.entropix_sampler_state_json(h, None, 0)
        if n == 0:
            raise EntropixError(_last_error("no state"))
        buf = ctypes.create_string_buffer(n + 1)
        _lib.entropix_sampler_state_json(h, buf, n + 1)
        return json.loads(buf.value.decode())

    def close(self) -> None:
        if self._h:
            _lib.llama_sampler_free(self._h)
            self._h = None

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Sampler({self.family!r})" if self._h else f"Sampler({self.family!r}, closed)"


class Chain:
    """Samplers applied in order to the same candidate array, as llama.cpp's
    sampler chain does; the last one usually selects (``dist``, ``greedy``,
    or an adaptive sampler)."""

    def __init__(self, samplers: Sequence[Sampler]) -> None:
        self.samplers = list(samplers)

    def apply(self, logits: Any) -> Result:
        return _run([s._handle() for s in self.samplers], logits)

    @staticmethod
    def _sample_with(samplers: Sequence[Sampler], logits: Any) -> int:
        result = _run([s._handle() for s in samplers], logits)
        if result.token is None:
            names = ", ".join(s.family for s in samplers)
            raise EntropixError(_last_error(f"no token selected by [{names}]: end the chain with a selecting sampler (dist, greedy, entropix, ...)"))
        for s in samplers:
            s.accept(result.token)
        return result.token

    def sample(self, logits: Any) -> int:
        """Applies the chain, accepts the selected token into every sampler
        and returns it."""
        return Chain._sample_with(self.samplers, logits)

    def accept(self, token: int) -> None:
        for s in self.samplers:
            s.accept(token)

    def reset(self) -> None:
        for s in self.samplers:
            s.reset()
