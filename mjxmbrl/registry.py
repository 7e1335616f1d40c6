"""Name -> (config class, factory, config-time check): the one registry kind every method package uses.

`mjxmbrl.models.MODELS`, `mjxmbrl.planners.PLANNERS` and `mjxmbrl.agents.AGENTS`
are `Registry` instances. Adding a method is one module (its config dataclass,
its check and its factory), one `register(...)` line in its package's
`__init__.py`, and its YAML:

    MODELS.register("mlp", MLPModelConfig, make_mlp_model, check=check_mlp)

`config.py` reads the registries to parse the `agent`, `model` and `planner`
sections; the factories are called by `agents.build_agent`. A test (or a
user's script) may register its own entry and `unregister` it afterwards.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Sequence

from mjxmbrl.types import ConfigError


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, else ' (valid: a, b, c)'."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(sorted(options))})"


class Entry(NamedTuple):
    """One registered method.

    config: a frozen dataclass whose `name` field defaults to the registered name;
    make: the factory (its signature is the package's: see that package's `__init__`);
    check(cfg: Config) -> None: raises ConfigError for settings that cannot work,
        before anything runs (it may look at other sections: an SVG horizon needs a model).
    defaults(raw: dict) -> dict: optional; default values this method sets in
        *other* sections before they are parsed (SVG sets the GRU's window to its horizon).
    """

    name: str
    config: type
    make: Callable[..., Any]
    check: Optional[Callable[[Any], None]] = None
    defaults: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None

    @property
    def summary(self) -> str:
        return (self.config.__doc__ or "").strip().splitlines()[0] if self.config.__doc__ else ""


class Registry:
    """An ordered name -> Entry table of one kind ("agent", "model", "planner")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Entry] = {}

    def register(
        self,
        name: str,
        config: type,
        make: Callable[..., Any],
        check: Optional[Callable[[Any], None]] = None,
        defaults: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> Entry:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered already")
        if getattr(config(), "name", None) != name:
            raise ValueError(f"{self.kind} '{name}': {config.__name__}.name must default to '{name}'")
        entry = Entry(name, config, make, check, defaults)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: Any) -> Entry:
        """The entry of `name`; an unknown name is a ConfigError that suggests the closest."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'" + did_you_mean(str(name), list(self._entries)))
        return self._entries[name]

    def names(self) -> list:
        return list(self._entries)

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))
