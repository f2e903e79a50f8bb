"""sorex execution algos: child-order schedulers driven by the engine through :class:`AlgoContext`.

TWAP, VWAP (volume profiles), POV, iceberg and implementation shortfall (Almgren–Chriss); see
``docs/algos.md`` for behaviour, parameters and the engine contract.
"""

from algos.base import AlgoContext, AlgoStatus, ChildRequest, ExecutionAlgo
from algos.factory import build_algo
from algos.iceberg import IcebergAlgo
from algos.params import CommonParams
from algos.pov import PovAlgo
from algos.profile import VolumeProfile, build_profile
from algos.shortfall import ACModel, ShortfallAlgo
from algos.twap import TwapAlgo
from algos.vwap import VwapAlgo

__all__ = [
    "ACModel",
    "AlgoContext",
    "AlgoStatus",
    "ChildRequest",
    "CommonParams",
    "ExecutionAlgo",
    "IcebergAlgo",
    "PovAlgo",
    "ShortfallAlgo",
    "TwapAlgo",
    "VolumeProfile",
    "VwapAlgo",
    "build_algo",
    "build_profile",
]
