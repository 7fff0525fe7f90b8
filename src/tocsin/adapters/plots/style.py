"""What every Tocsin figure shares: the Agg backend, the grade colours, display names and units.

Grade colours are one ordered, colour-blind-safe scale (light yellow to dark red, then black for
death): lightness rises with severity, so the order survives deuteranopia and greyscale print. The
same colours mean the same grade in the course figure, the swimmer plot and the reports.

>>> GRADE_COLOURS[3]
'#d7301f'
>>> display_unit("10*9/L"), display_name("il6")
('×10⁹/L', 'IL-6')
"""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: reports render on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

#: An id and the three ways matplotlib's SVG refers to one: id="x", href="#x" (xlink too) and url(#x).
_SVG_ID = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')

#: Grade -> fill colour; 0 is "assessed, no toxicity".
GRADE_COLOURS: dict[int, str] = {
    0: "#f0f0f0",
    1: "#fdd49e",
    2: "#fc8d59",
    3: "#d7301f",
    4: "#7f0000",
    5: "#000000",
}
#: An assessment that could not be graded (data missing) is shown hatched, never as grade 0.
UNGRADABLE_COLOUR = "#bdbdbd"
UNGRADABLE_HATCH = "////"
#: Okabe–Ito: categorical colours (groups, analytes) that colour-blind readers can tell apart.
SERIES_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

_NAMES = {
    "il6": "IL-6",
    "il10": "IL-10",
    "ifng": "IFN-γ",
    "crp": "CRP",
    "pct": "PCT",
    "ldh": "LDH",
    "anc": "ANC",
    "wbc": "WBC",
    "plt": "Platelets",
    "hgb": "Hb",
    "g_csf": "G-CSF",
    "pegfilgrastim": "Pegfilgrastim",
    "gm_csf": "GM-CSF",
    "tpo_ra": "TPO-RA",
    "epo": "EPO",
    "ivig": "IVIG",
    "rbc_transfusion": "RBC transfusion",
    "platelet_transfusion": "Platelet transfusion",
    "car_t_copies": "CAR transgene",
    "car_t_cells": "CAR-T cells",
    "car_t_percent": "CAR-T cells (% of lymphocytes)",
    "oxygen_flow": "O₂ flow",
    "crs": "CRS",
    "icans": "ICANS",
}
_UNIT_PARTS = (
    ("10*9", "10⁹"),
    ("10*6", "10⁶"),
    ("10*3", "10³"),
    ("ug", "µg"),
    ("uL", "µL"),
    ("[iU]", "IU"),
    ("mm[Hg]", "mmHg"),
    ("{", ""),
    ("}", ""),
)


def display_name(item: str) -> str:
    """The name a clinician reads for a vocabulary item ("il6" -> "IL-6", "norepinephrine" -> "Norepinephrine")."""
    return _NAMES.get(item, item.replace("_", " ").capitalize())


def display_unit(ucum: str | None) -> str:
    """A UCUM unit as printed on an axis ("Cel" -> "°C", "10*9/L" -> "×10⁹/L", "{copies}/ug" -> "copies/µg")."""
    if not ucum:
        return ""
    if ucum == "Cel":
        return "°C"
    text = ucum
    for code, shown in _UNIT_PARTS:
        text = text.replace(code, shown)
    return "×" + text if text.startswith("10") else text


def grade_legend_handles(grades: range = range(0, 6), ungradable: bool = True) -> list[Patch]:
    """Legend patches for grades (and the hatched "cannot grade")."""
    handles = [
        Patch(
            facecolor=GRADE_COLOURS[g],
            edgecolor="#636363",
            linewidth=0.5,
            label=f"grade {g}" + (" (death)" if g == 5 else ""),
        )
        for g in grades
    ]
    if ungradable:
        handles.append(
            Patch(facecolor="white", edgecolor=UNGRADABLE_COLOUR, hatch=UNGRADABLE_HATCH, label="cannot grade")
        )
    return handles


def new_figure(width: float, height: float) -> Figure:
    """A figure with the report's typography (not registered with pyplot, so nothing leaks between reports)."""
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def figure_svg(figure: Figure, id_prefix: str = "") -> str:
    """The figure as an inline SVG element (text as paths: no font needed to view it).

    Every matplotlib SVG numbers its elements from 1 (``patch_1``, ``axes_1``), so a page with several figures
    gives each an ``id_prefix`` to keep its ids, and the references to them, unique in the document.
    """
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "tocsin"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    if id_prefix:
        text = _SVG_ID.sub(lambda m: f'{m.group(1)}{id_prefix}{m.group(2)}', text)
    return text
