"""Data providers: the contract, the registry, and the built-in providers."""

from .base import Option, Provider
from .registry import available_providers, get_provider, provider_class

__all__ = ["Option", "Provider", "available_providers", "get_provider", "provider_class"]
