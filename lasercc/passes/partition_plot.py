"""A core-occupancy map of a partition (``lasercc inspect OUT --plot occupancy.png``).

Reads the ``partition.json`` form (:meth:`lasercc.passes.partition.Partition.to_json`), so it
works on a saved artifact without re-running the partitioner. Every used core is one cell, laid
out as the hardware is: chips on the system grid, routers on each chip's mesh, the cores of a
router in a small block; the colour is the core's utilisation of its binding resource (the
highest of neurons, memory, input axons), empty core slots are grey and chip boundaries are
drawn. Only the bounding box of the chips in use is shown (a Hala Point map would otherwise be
mostly empty). matplotlib is an optional extra (``pip install lasercc[plot]``), imported lazily
with the non-interactive Agg backend so it works on headless machines.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import LasercError

PLOT_EXTRA = "plot"


class PlotError(LasercError):
    """matplotlib is missing or the partition has no per-core data to plot."""


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError(f"--plot needs matplotlib: pip install 'lasercc[{PLOT_EXTRA}]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def occupancy_grid(part: dict[str, Any]) -> tuple[np.ndarray, tuple[int, int]]:
    """Utilisation per core cell as a 2-D array (NaN = empty slot) and the chip cell size (w, h)."""
    cores = part.get("cores")
    if not cores or not cores.get("rows"):
        raise PlotError("partition.json has no per-core table (it was written with cores=False)")
    cols = {c: i for i, c in enumerate(cores["columns"])}
    rows = np.asarray(cores["rows"], dtype=np.float64)
    spec_core, mesh = part["spec"]["core"], part["spec"]["mesh"]
    util = np.maximum.reduce([rows[:, cols["neurons"]] / spec_core["max_neurons"],
                              rows[:, cols["memory_bits"]] / (spec_core["memory_bytes"] * 8),
                              rows[:, cols["axons_in"]] / spec_core["max_axons_in"]])
    cpr = int(mesh["cores_per_router"])
    sub_w = math.ceil(math.sqrt(cpr))
    sub_h = math.ceil(cpr / sub_w)
    chip_w, chip_h = int(mesh["width"]) * sub_w, int(mesh["height"]) * sub_h
    chip, cx, cy, rx, ry = (rows[:, cols[k]].astype(np.int64) for k in ("chip", "chip_x", "chip_y",
                                                                         "router_x", "router_y"))
    # slot of each core within its router: its rank among the cores sharing (chip, router)
    key = (chip * int(mesh["height"]) + ry) * int(mesh["width"]) + rx
    order = np.argsort(key, kind="stable")
    sk = key[order]
    first = np.searchsorted(sk, sk, side="left")
    slot = np.empty_like(key)
    slot[order] = np.arange(len(sk)) - first
    gx = cx * chip_w + rx * sub_w + slot % sub_w
    gy = cy * chip_h + ry * sub_h + slot // sub_w
    grid = np.full(((int(cy.max()) + 1) * chip_h, (int(cx.max()) + 1) * chip_w), np.nan)
    grid[gy, gx] = util
    return grid, (chip_w, chip_h)


def plot_occupancy(part: dict[str, Any], path: str | Path) -> Path:
    """Write the occupancy map of ``part`` (a ``partition.json`` dict) as a PNG; returns the path."""
    plt = _matplotlib()
    grid, (cw, ch) = occupancy_grid(part)
    n_cy, n_cx = grid.shape[0] // ch, grid.shape[1] // cw
    fig_w = min(16.0, max(7.5, 0.9 * n_cx * cw / 8 + 2.0))
    fig_h = min(16.0, max(4.0, 0.9 * n_cy * ch / 8 + 1.5))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest",
                   origin="upper")
    sub_w, sub_h = cw // max(1, int(part["spec"]["mesh"]["width"])), ch // max(1, int(part["spec"]["mesh"]["height"]))
    if n_cx * n_cy <= 64:  # router tiles, faintly (unreadable on big systems)
        for x in range(0, n_cx * cw + 1, sub_w):
            ax.axvline(x - 0.5, color="white", lw=0.4)
        for y in range(0, n_cy * ch + 1, sub_h):
            ax.axhline(y - 0.5, color="white", lw=0.4)
    for x in range(n_cx + 1):  # chip boundaries
        ax.axvline(x * cw - 0.5, color="black", lw=1.5, clip_on=False)
    for y in range(n_cy + 1):
        ax.axhline(y * ch - 0.5, color="black", lw=1.5, clip_on=False)
    ax.set_xlim(-0.5, n_cx * cw - 0.5)
    ax.set_ylim(n_cy * ch - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    u = part.get("utilisation", {})
    util_txt = ", ".join(f"{k} {v:.0%}" for k, v in u.items())
    ax.set_title(f"{part.get('graph', '?')} on {part.get('system', '?')}: {part.get('cores_used', 0):,} core(s) "
                 f"on {part.get('chips_used', '?')} chip(s); binding resource: {part.get('binding_resource', '?')}\n"
                 f"mean utilisation of used cores: {util_txt}; grey = free core", fontsize=9)
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes("right", size="2.5%", pad=0.1)  # exactly the map's height
    fig.colorbar(im, cax=cax, label="core utilisation\n(max over resources)")
    out = Path(path)
    fig.savefig(out, format="png", bbox_inches="tight")
    plt.close(fig)
    return out
