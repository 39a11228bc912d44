"""Consistency models as swappable protocol actors: BSP, ASP, SSP(s), ESSP(s)."""

from .asp import ASP as ASP
from .bsp import BSP as BSP
from .contract import ConsistencyProtocol as ConsistencyProtocol
from .essp import ESSP as ESSP
from .ssp import SSP as SSP

PROTOCOLS = {"bsp": BSP, "asp": ASP, "ssp": SSP, "essp": ESSP}

__all__ = ["ASP", "BSP", "ESSP", "PROTOCOLS", "SSP", "ConsistencyProtocol"]
