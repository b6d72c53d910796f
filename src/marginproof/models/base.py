"""The margin-model interface: ``model.margin(portfolio, market) -> MarginResult``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, runtime_checkable

from marginproof.config.params import config_dir, load_toml, params_hash
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.result import MarginResult


@runtime_checkable
class MarginModel(Protocol):
    """Anything with a name, frozen parameters and a ``margin`` method."""

    @property
    def name(self) -> str: ...

    @property
    def params_hash(self) -> str: ...

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult: ...


class BaseMarginModel(ABC):
    """Common plumbing: parameters from a TOML file, their hash, the model name.

    Subclasses set ``name`` and ``default_config`` (path relative to ``configs/``) and
    implement :meth:`margin`. Parameters are read once and frozen.
    """

    name: ClassVar[str]
    default_config: ClassVar[str]

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        raw = dict(params) if params is not None else load_toml(config_dir() / self.default_config)
        self._params = MappingProxyType(raw)
        self._hash = params_hash({"model": self.name, "params": raw})
        self._validate(self._params)

    @classmethod
    def from_file(cls, path: str | Path) -> BaseMarginModel:
        """Build the model from a parameter file (a copied and edited preset, say)."""
        return cls(load_toml(path))

    @property
    def params(self) -> Mapping[str, Any]:
        return self._params

    @property
    def params_hash(self) -> str:
        return self._hash

    def with_factors(self, factors: Any) -> BaseMarginModel:
        """This model bound to a live risk-factor state (:class:`marginproof.risk.live.
        RiskFactorState`). Models that read no live factor (grid, formula presets) return
        themselves; history models return a view that uses the state's vols and draws."""
        return self

    @property
    def live_factors(self) -> Any:
        """The risk-factor state this model is bound to (None: the as-of day's history)."""
        return None

    def _validate(self, params: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Check parameters, raising ``InputError`` naming the field."""

    @abstractmethod
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        """Margin of ``portfolio`` at ``market``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params_hash={self._hash[:12]}...)"
