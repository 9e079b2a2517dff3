"""Quantization from scratch, checked against PyTorch.

Chapter: taught in ``compression``.

:func:`symmetric_qparams` / :func:`affine_qparams` choose a scale (and zero point) per tensor or per
channel; :func:`quantize` / :func:`dequantize` map floats to ``b``-bit integers and back, as
``torch.quantize_per_tensor`` / ``torch.quantize_per_channel`` do (tests/chapters/test_compression.py compares them
code by code). :func:`quantize_dynamic_int8` runs PyTorch's post-training dynamic quantization
(``torch.ao.quantization.quantize_dynamic``, deprecated in recent releases) and falls back to
:class:`Int8Linear`, the same arithmetic written out, where that API is missing.
"""
from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn

# ============================================================================ quantization from scratch


def qrange(bits: int = 8, signed: bool = True) -> tuple[int, int]:
    """Integer range of a ``bits``-bit code: signed ``[-2^(b-1), 2^(b-1)-1]``, unsigned ``[0, 2^b - 1]``."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int from 2 to 8 (codes are stored in int8/uint8), got {bits!r}")
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def _check_float(x: torch.Tensor, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}; "
                        "integer codes go to dequantize(), not quantize()")


def _reduce_dims(x: torch.Tensor, dim: int | None) -> tuple[int, ...] | None:
    """Dimensions to reduce over: all (per tensor, ``dim=None``) or all but ``dim`` (per channel)."""
    if dim is None:
        return None
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"channel dim {dim} is out of range for a tensor of shape {tuple(x.shape)}")
    dim = dim % x.ndim
    return tuple(d for d in range(x.ndim) if d != dim)


def _bcast(p: torch.Tensor, x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Reshape a per-channel parameter (C,) so it broadcasts along ``dim`` of ``x``; scalars pass through."""
    p = torch.as_tensor(p, device=x.device)
    if dim is None:
        if p.numel() != 1:
            raise ValueError(f"per-tensor quantization needs one scale/zero point, got {p.numel()}; "
                             "pass dim=<channel axis> for per-channel parameters")
        return p.reshape(())
    dim = dim % x.ndim
    if p.ndim != 1 or p.numel() != x.shape[dim]:
        raise ValueError(f"per-channel parameters along dim {dim} must have shape ({x.shape[dim]},), "
                         f"got {tuple(p.shape)}")
    shape = [1] * x.ndim
    shape[dim] = -1
    return p.reshape(shape)  # (1, .., C, .., 1)


def symmetric_qparams(x: torch.Tensor, bits: int = 8, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric scale ``s = max|x| / (2^(b-1) - 1)`` and zero point 0, per tensor or per channel ``dim``.

    The largest magnitude maps to ``±(2^(b-1) - 1)`` (±127 for int8); the code ``-2^(b-1)`` is left unused so
    the grid is symmetric around 0. (PyTorch's ``MinMaxObserver`` divides by 127.5 instead; any positive
    scale works with :func:`quantize` -- this one never clips.)
    """
    _check_float(x)
    _, qmax = qrange(bits, True)
    dims = _reduce_dims(x, dim)
    amax = x.detach().abs().amax() if dims is None else x.detach().abs().amax(dim=dims)   # () or (C,)
    scale = (amax / qmax).float().clamp_min(torch.finfo(torch.float32).eps)  # an all-zero tensor gets a tiny scale
    return scale, torch.zeros_like(scale, dtype=torch.int64)


def affine_qparams(x: torch.Tensor, bits: int = 8, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric (affine) parameters for unsigned codes ``[0, 2^b - 1]``: the range ``[min(x, 0), max(x, 0)]``
    is spread over all codes, ``s = (max - min) / (2^b - 1)``, and the zero point ``z = -round(min / s)`` is
    the code that represents 0.0 exactly -- as ``torch.ao.quantization.MinMaxObserver`` computes them."""
    _check_float(x)
    qmin, qmax = qrange(bits, False)
    dims = _reduce_dims(x, dim)
    xd = x.detach().float()
    lo = xd.amin() if dims is None else xd.amin(dim=dims)
    hi = xd.amax() if dims is None else xd.amax(dim=dims)
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)                      # 0 must be inside the range
    scale = ((hi - lo) / float(qmax - qmin)).clamp_min(torch.finfo(torch.float32).eps)
    zero_point = (qmin - torch.round(lo / scale)).to(torch.int64).clamp(qmin, qmax)
    return scale, zero_point


def quantize(x: torch.Tensor, scale, zero_point=0, bits: int = 8, signed: bool = True,
             dim: int | None = None) -> torch.Tensor:
    """``q = clamp(round(x / s + z), qmin, qmax)`` as int8 (``signed``) or uint8 codes.

    ``scale``/``zero_point`` are scalars (per tensor) or shape ``(C,)`` tensors with ``dim`` the channel axis.
    Like PyTorch we multiply by ``1/s`` (computed in float32) and round half to even. The codes equal
    ``torch.quantize_per_tensor``/``_per_channel``'s, except that very rarely (a few in a million) a value
    within float32 rounding of a half-step lands one code apart: PyTorch's kernels differ among themselves
    there (some use a fused multiply-add).
    """
    _check_float(x)
    qmin, qmax = qrange(bits, signed)
    s = _bcast(torch.as_tensor(scale, dtype=torch.float32), x, dim)
    if (s <= 0).any():
        raise ValueError("scale must be positive")
    z = _bcast(torch.as_tensor(zero_point, dtype=torch.int64), x, dim)
    q = torch.round(x.float() * (1.0 / s) + z)
    return q.clamp(qmin, qmax).to(torch.int8 if signed else torch.uint8)


def dequantize(q: torch.Tensor, scale, zero_point=0, dim: int | None = None) -> torch.Tensor:
    """``x̂ = (q - z) · s`` in float32, the inverse of :func:`quantize` up to rounding (error ≤ s/2 inside the range)."""
    if not isinstance(q, torch.Tensor) or q.is_floating_point():
        raise TypeError("dequantize expects the integer codes returned by quantize(), "
                        f"got {getattr(q, 'dtype', type(q).__name__)}")
    s = _bcast(torch.as_tensor(scale, dtype=torch.float32), q, dim)
    z = _bcast(torch.as_tensor(zero_point, dtype=torch.int64), q, dim)
    return (q.to(torch.int64) - z).float() * s


def fake_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None) -> torch.Tensor:
    """Round ``x`` to its symmetric ``bits``-bit grid and back (per tensor, or per channel ``dim``)."""
    scale, zp = symmetric_qparams(x, bits, dim)
    return dequantize(quantize(x, scale, zp, bits, True, dim), scale, zp, dim).to(x.dtype)


@contextlib.contextmanager
def quiet_quantization_warnings():
    """Silence the deprecation warnings that ``torch.ao.quantization`` and quantized tensors raise in torch ≥ 2.9
    (the API still works; its replacement lives in the separate ``torchao`` package)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*(quantiz|torchao).*")
        yield


def torch_quantize(x: torch.Tensor, scale, zero_point=0, signed: bool = True, dim: int | None = None):
    """PyTorch's own int8/uint8 codes for the same parameters (``torch.quantize_per_tensor`` or
    ``torch.quantize_per_channel``, then ``int_repr()``), or ``None`` if this torch has no quantized tensors."""
    dtype = torch.qint8 if signed else torch.quint8
    try:
        with quiet_quantization_warnings():
            if dim is None:
                qt = torch.quantize_per_tensor(x.float(), float(scale), int(zero_point), dtype)
            else:
                qt = torch.quantize_per_channel(x.float(), torch.as_tensor(scale).double(),
                                                torch.as_tensor(zero_point).long(), dim % x.ndim, dtype)
            return qt.int_repr()
    except (AttributeError, RuntimeError, NotImplementedError):
        return None


# ============================================================================ dynamic int8 quantization


class Int8Linear(nn.Module):
    """A ``Linear`` layer stored as int8 weights (per output channel, symmetric) that quantizes its input on
    the fly (per batch, affine uint8) and multiplies the integer codes -- what PyTorch's dynamically quantized
    ``Linear`` does, written out. The integer product is accumulated in int32, then rescaled:

    ``y = s_x · s_w[o] · Σ_i (q_x[i] - z_x) · q_w[o, i] + b[o]``.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features))

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "Int8Linear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Int8Linear.from_float needs an nn.Linear, got {type(linear).__name__}")
        m = cls(linear.in_features, linear.out_features)
        w = linear.weight.detach().float().cpu()
        scale, zp = symmetric_qparams(w, 8, dim=0)                       # (out,)
        m.weight_int8.copy_(quantize(w, scale, zp, 8, True, dim=0))
        m.weight_scale.copy_(scale)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach().float().cpu())
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Int8Linear expects inputs with {self.in_features} features in the last dim, "
                             f"got shape {tuple(x.shape)}")
        sx, zx = affine_qparams(x, 8)                                    # one scale for the batch
        qx = quantize(x, sx, zx, 8, signed=False).to(torch.int32) - zx.to(torch.int32)     # (..., in)
        acc = qx @ self.weight_int8.to(torch.int32).t()                  # (..., out) int32
        return acc.float() * (sx * self.weight_scale) + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel weights"


def scratch_quantize_dynamic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by :class:`Int8Linear`."""
    model = copy.deepcopy(model).cpu().eval()

    def swap(module):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear.from_float(child))
            else:
                swap(child)
    swap(model)
    return model


def quantize_dynamic_int8(model: nn.Module, force_scratch: bool = False) -> tuple[nn.Module, str]:
    """Post-training dynamic int8 quantization of the ``nn.Linear`` layers of a copy of ``model`` (on the CPU).

    Returns ``(quantized_model, backend)``: ``backend`` is ``"torch.ao"`` when
    ``torch.ao.quantization.quantize_dynamic`` worked, ``"scratch"`` when it is missing or failed (or
    ``force_scratch``), in which case :func:`scratch_quantize_dynamic` is used. The original is not modified.
    """
    float_model = copy.deepcopy(model).cpu().eval()
    if not force_scratch:
        try:
            if torch.backends.quantized.engine in (None, "none"):        # fail here, not at the first forward
                raise RuntimeError("no quantized engine (fbgemm/x86/qnnpack) in this build of torch")
            with quiet_quantization_warnings():
                from torch.ao.quantization import quantize_dynamic
                qmodel = quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
            return qmodel, "torch.ao"
        except (ImportError, AttributeError, RuntimeError, NotImplementedError) as e:
            warnings.warn(f"torch.ao.quantization.quantize_dynamic is unavailable here ({type(e).__name__}: {e}); "
                          "using the book's scratch int8 layers instead", stacklevel=2)
    return scratch_quantize_dynamic(float_model), "scratch"
