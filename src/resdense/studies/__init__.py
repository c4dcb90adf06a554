"""Studies that make the seed's claims visible: each trains ordinary runs, then writes a table, figures and
a report that says, from its own numbers, whether the claim held.

One call per study (``degradation``, ``identity``, ``gradients``, ``efficiency``), each returning a
:class:`StudyResult` whose ``table`` is a list of rows; ``resdense study NAME`` is the command-line twin.
Studies sit above training: every run is an ordinary run folder (``resdense evaluate`` / ``compare``).
"""

from .base import StudyResult
from .degradation import degradation
from .efficiency import efficiency
from .gradients import gradients
from .identity import deepen, identity

STUDIES = {"degradation": degradation, "identity": identity, "gradients": gradients, "efficiency": efficiency}

__all__ = ["STUDIES", "StudyResult", "deepen", "degradation", "efficiency", "gradients", "identity"]
