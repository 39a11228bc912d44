"""Consistency models as swappable protocol actors: BSP, ASP, SSP(s), ESSP(s).

They are registered by name (group ``"protocol"``) in ``actorml/builtins.py``.
"""

from .asp import ASP as ASP
from .bsp import BSP as BSP
from .contract import ConsistencyProtocol as ConsistencyProtocol
from .essp import ESSP as ESSP
from .ssp import SSP as SSP

__all__ = ["ASP", "BSP", "ESSP", "SSP", "ConsistencyProtocol"]
