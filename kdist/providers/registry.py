"""Provider names to provider classes: built-ins, then plug-ins from entry points.

Built-ins are lazy ``"module:Class"`` strings, so listing providers imports no vendor
library. Third-party packages register under the entry-point group ``kdist.providers``;
they are read once, on first use. A plug-in that fails to load warns and is skipped; an
unknown name lists what exists (and the
closest name, when one is close); a provider whose optional package is missing says which
extra installs it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import warnings
from importlib.metadata import entry_points

from ..errors import MissingDependencyError, UnknownProviderError, did_you_mean
from .base import Provider

__all__ = ["available_providers", "get_provider", "provider_class"]

ENTRY_POINT_GROUP = "kdist.providers"

_BUILTINS = {
    "akshare": "kdist.providers.akshare_:AkshareProvider",
    "baostock": "kdist.providers.baostock_:BaostockProvider",
    "csv": "kdist.providers.files:CSVProvider",
    "parquet": "kdist.providers.files:ParquetProvider",
    "synthetic": "kdist.providers.synthetic:SyntheticProvider",
    "tdx": "kdist.providers.tdx:TdxProvider",
    "yfinance": "kdist.providers.yfinance_:YfinanceProvider",
}


@functools.cache
def _plugins() -> dict[str, object]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTINS:
            warnings.warn(
                f"Plug-in provider {ep.name!r} ({ep.value}) shadows a built-in and is ignored",
                stacklevel=2,
            )
            continue
        found[ep.name] = ep
    return found


def _names() -> list[str]:
    return sorted({*_BUILTINS, *_plugins()})


def provider_class(name: str) -> type[Provider]:
    """Return the provider class registered as ``name``."""
    if name in _BUILTINS:
        module, _, attr = _BUILTINS[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    if name in _plugins():
        try:
            cls = _plugins()[name].load()
        except Exception as exc:  # a broken plug-in must not take the others down
            raise UnknownProviderError(
                f"Provider {name!r} failed to load ({type(exc).__name__}: {exc}); "
                f"reinstall the package that provides it",
                name=name,
                available=_names(),
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise UnknownProviderError(
                f"Entry point {name!r} is not a kdist Provider subclass", name=name
            )
        return cls
    raise UnknownProviderError(
        f"Unknown provider {name!r}{did_you_mean(name, _names())}; "
        f"available: {', '.join(_names())}",
        name=name,
        available=_names(),
    )


def _missing(cls: type[Provider]) -> list[str]:
    return [m for m in cls.requires if importlib.util.find_spec(m) is None]


def get_provider(provider: str | Provider = "synthetic", **options) -> Provider:
    """Return a provider instance from a name and options, or pass an instance through.

    Raises
    ------
    UnknownProviderError
        No provider has that name; the message lists the available ones.
    MissingDependencyError
        The provider's optional packages are not installed; the message names the extra.
    InvalidOptionError
        An option is unknown or has the wrong type.
    """
    if isinstance(provider, Provider):
        if options:
            return type(provider)(**{**provider.given_options(), **options})
        return provider
    cls = provider_class(str(provider))
    missing = _missing(cls)
    if missing:
        hint = f'pip install "kdist[{cls.extra}]"' if cls.extra else f"pip install {missing[0]}"
        raise MissingDependencyError(
            f"Provider {cls.name!r} needs {', '.join(missing)}: {hint}",
            name=cls.name,
            extra=cls.extra,
        )
    return cls(**options)


def available_providers() -> list[dict]:
    """Describe every registered provider: name, installed, extra, description.

    A plug-in that cannot be loaded is reported with ``installed=False`` and the error.
    """
    rows = []
    for name in _names():
        try:
            cls = provider_class(name)
        except (UnknownProviderError, ImportError) as exc:
            # A broken provider is listed as unusable, never hides the others.
            warnings.warn(f"Provider {name!r} cannot be loaded: {exc}", stacklevel=2)
            rows.append(
                {"name": name, "installed": False, "extra": None, "description": str(exc)}
            )
            continue
        rows.append(
            {
                "name": name,
                "installed": not _missing(cls),
                "extra": cls.extra,
                "description": cls.description,
                "options": {k: o.help for k, o in cls.options.items()},
                # What a gap check and the horizon warnings take from the provider.
                "freqs": [f.value for f in cls.freqs],
                "calendar": cls.calendar,
                "bar_time": cls.bar_time,
                "horizons": {
                    freq.value: {"days": h.days,
                                 "earliest": None if h.earliest is None
                                 else str(h.earliest.date()),
                                 "source": h.source}
                    for freq, h in cls.horizons.items()},
            }
        )
    return rows
