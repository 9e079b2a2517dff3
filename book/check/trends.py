"""Self-checks for the chapter "Trends and open challenges"."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from book.check.core import Case, run_cases

__all__ = ["gpu_hours", "energy_mwh", "co2_tonnes", "clip_loss"]


def gpu_hours(fn) -> None:
    """``fn(flops, peak_flops, mfu)`` -> device-hours."""
    cases = [Case((3.6e15, 1e12, 1.0), 1.0, label="3.6e15 FLOPs at 1 TFLOP/s, full utilisation: one hour"),
             Case((6 * 7e9 * 140e9, 990e12, 0.4), 6 * 7e9 * 140e9 / (990e12 * 0.4) / 3600,
                  label="7 B x 140 B tokens on H100s"),
             Case((3.14e23, 125e12, 0.2), 3.14e23 / 25e12 / 3600, public=False, label="GPT-3 on V100s")]
    run_cases("gpu_hours", lambda *a: float(fn(*a)), cases, hint="seconds = flops / (peak * mfu); divide by 3600")


def energy_mwh(fn) -> None:
    """``fn(gpu_hours, watts, pue)`` -> MWh."""
    cases = [Case((1000, 1000, 1.0), 1.0, label="1000 h at 1 kW: 1 MWh"),
             Case((3.5e6, 330, 1.1), 3.5e6 * 330 * 1.1 / 1e6, label="GPT-3-like"),
             Case((10, 700, 1.5), 0.0105, public=False, label="10 H100-hours, PUE 1.5")]
    run_cases("energy_mwh", lambda *a: float(fn(*a)), cases, hint="watt-hours = hours x watts x PUE; 1 MWh = 1e6 Wh")


def co2_tonnes(fn) -> None:
    """``fn(mwh, kg_per_kwh)`` -> tonnes CO2e."""
    cases = [Case((1.0, 1.0), 1.0, label="1 MWh at 1 kg/kWh: 1 t"),
             Case((1287, 552 / 1287), 552.0, label="GPT-3 (Patterson et al.)"),
             Case((100, 0.05), 5.0, public=False, label="a low-carbon grid")]
    run_cases("co2_tonnes", lambda *a: float(fn(*a)), cases, hint="1 MWh = 1000 kWh; 1 t = 1000 kg")


def _clip(u, v, tau):
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    s = u @ v.T / tau
    t = torch.arange(len(u))
    return (F.cross_entropy(s, t) + F.cross_entropy(s.T, t)) / 2


def clip_loss(fn) -> None:
    """``fn(u, v, tau)`` -> symmetric contrastive (InfoNCE) loss."""
    g = torch.Generator().manual_seed(41)
    u = torch.eye(3)
    cases = [Case((u, u, 1.0), _clip(u, u, 1.0), label="three orthogonal matching pairs, tau = 1")]
    a, b = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)
    cases.append(Case((a, b, 0.1), _clip(a, b, 0.1), public=False, label="random (8, 5), tau = 0.1"))
    c = torch.randn(6, 4, generator=g, dtype=torch.float64)
    cases.append(Case((c, 3 * c, 0.5), _clip(c, 3 * c, 0.5), public=False, label="same directions, different lengths"))
    run_cases("clip_loss", fn, cases,
              hint="normalise, s = u @ v.T / tau, average CE(s) and CE(s.T) with targets arange(n)")
