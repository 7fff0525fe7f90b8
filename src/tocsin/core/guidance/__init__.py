"""Guideline packs, assessment facts and the suggestion evaluator behind ``tocsin assess`` (docs/assess.md).

* :mod:`.packs` — a pack is versioned data (``tocsin/data/packs/<name>.yaml``) validated on load;
* :mod:`.facts` — named facts at (patient, time), one column each;
* :mod:`.suggest` — the pack's rules evaluated over the facts: ranked suggestions, alerts and the rules that
  cannot be evaluated for want of a fact.
"""

from tocsin.core.guidance.facts import assessment_facts
from tocsin.core.guidance.packs import Pack, PackError, load_pack, pack_names, parse_pack
from tocsin.core.guidance.suggest import SUGGESTION_COLUMNS, suggest

__all__ = [
    "SUGGESTION_COLUMNS",
    "Pack",
    "PackError",
    "assessment_facts",
    "load_pack",
    "pack_names",
    "parse_pack",
    "suggest",
]
