"""Which carrier adapters a deployment has credentials for, read from environment variables.

Each adapter module declares NAME, DEFAULT_BASE_URL, CREDENTIALS (some add OPTIONAL_CREDENTIALS
and ENV_PREFIX). A credential `api_key` of an adapter with prefix DHL is read from `DHL_API_KEY`;
the base URL from `DHL_BASE_URL` (default: the module's DEFAULT_BASE_URL).

Webhook secrets are listed among an adapter's CREDENTIALS, but they only matter for pushes: an
adapter is built as soon as its *polling* credentials are set, and it counts as push-ready
(`push_ready`) once its webhook credentials are set too. Never imports `bot`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import aiohttp

from carriers import Carrier, dhl, easypost, fedex, postnl, seventeentrack, thailandpost, ups, usps
from carriers.model import Credentials, Limits

Factory = Callable[..., Carrier]


@dataclass(frozen=True, slots=True)
class Adapter:
    """One adapter as the registry knows it: where its settings come from."""

    module: ModuleType
    factory: Factory
    #: credentials only push needs beyond the module's webhook_* ones (USPS mails its admin)
    push_extra: tuple[str, ...] = ()
    #: optional env settings passed to the constructor: SUFFIX -> keyword argument
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.module.NAME)

    @property
    def prefix(self) -> str:
        return str(getattr(self.module, "ENV_PREFIX", self.name.upper()))

    @property
    def limits(self) -> Limits:
        return self.module.LIMITS  # type: ignore[no-any-return]

    @property
    def credentials(self) -> tuple[str, ...]:
        """Everything the module declares as CREDENTIALS."""
        return tuple(self.module.CREDENTIALS)

    @property
    def required(self) -> tuple[str, ...]:
        """Credentials needed to poll."""
        return tuple(c for c in self.credentials if not c.startswith("webhook_"))

    @property
    def push_credentials(self) -> tuple[str, ...]:
        """Credentials needed (beyond `required`) to accept pushes and subscribe."""
        return (*(c for c in self.credentials if c.startswith("webhook_")), *self.push_extra)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "OPTIONAL_CREDENTIALS", ()))

    def var(self, credential: str) -> str:
        """The environment variable holding one credential or setting."""
        return f"{self.prefix}_{credential.upper()}"


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    Adapter(ups, ups.UpsCarrier),
    Adapter(fedex, fedex.FedexCarrier),
    Adapter(usps, usps.UspsCarrier, push_extra=("admin_email",)),
    Adapter(dhl, dhl.DhlCarrier),
    Adapter(easypost, easypost.EasypostCarrier),
    Adapter(seventeentrack, seventeentrack.SeventeenTrackCarrier),
    Adapter(postnl, postnl.PostnlCarrier),
    Adapter(thailandpost, thailandpost.ThailandPostCarrier,
            options={"LANGUAGE": "language", "HOOK_BASE_URL": "hook_base_url"}),
)}


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One environment variable a carrier reads (for the README and `check-config`)."""

    name: str
    carrier: str
    role: str  # "required" | "push" | "optional" | "base_url" | "option"
    meaning: str


def _present(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def is_configured(adapter: Adapter, env: Mapping[str, str]) -> bool:
    """Whether every polling credential of `adapter` is set."""
    return all(_present(env, adapter.var(c)) for c in adapter.required)


def credentials(adapter: Adapter, env: Mapping[str, str]) -> Credentials:
    """The adapter's base URL and every credential present in env."""
    base = env.get(adapter.var("base_url"), "").strip() or adapter.module.DEFAULT_BASE_URL
    names = (*adapter.credentials, *adapter.push_extra, *adapter.optional)
    values = {c: env[adapter.var(c)].strip() for c in dict.fromkeys(names)
              if _present(env, adapter.var(c))}
    return Credentials(base_url=base.rstrip("/"), values=values)


def build(adapter: Adapter, env: Mapping[str, str],
          session: aiohttp.ClientSession | None) -> Carrier:
    """One adapter from env (its polling credentials must be present)."""
    kwargs: dict[str, Any] = {}
    for suffix, keyword in adapter.options.items():
        if _present(env, f"{adapter.prefix}_{suffix}"):
            kwargs[keyword] = env[f"{adapter.prefix}_{suffix}"].strip()
    try:
        return adapter.factory(session, credentials(adapter, env), **kwargs)
    except ValueError as exc:
        raise ValueError(f"{adapter.prefix}_*: {exc}") from exc


def configured(env: Mapping[str, str], session: aiohttp.ClientSession | None) -> dict[str, Carrier]:
    """Every adapter whose polling credentials are present in env, by carrier name."""
    return {name: build(adapter, env, session)
            for name, adapter in ADAPTERS.items() if is_configured(adapter, env)}


def push_ready(env: Mapping[str, str]) -> set[str]:
    """Configured carriers that can also push: webhook credentials present (subscribe + verify)."""
    return {name for name, adapter in ADAPTERS.items()
            if adapter.limits.supports_push and is_configured(adapter, env)
            and all(_present(env, adapter.var(c)) for c in adapter.push_credentials)}


def missing(env: Mapping[str, str]) -> dict[str, list[str]]:
    """Half-configured carriers: some of their variables are set, required ones are missing."""
    out: dict[str, list[str]] = {}
    for name, adapter in ADAPTERS.items():
        touched = any(k.startswith(adapter.prefix + "_") and v.strip() for k, v in env.items())
        lacking = [adapter.var(c) for c in adapter.required if not _present(env, adapter.var(c))]
        if touched and lacking:
            out[name] = lacking
    return out


def env_vars() -> list[EnvVar]:
    """Every variable the carrier adapters read, in a stable order."""
    out: list[EnvVar] = []
    for name, adapter in ADAPTERS.items():
        for cred in adapter.required:
            out.append(EnvVar(adapter.var(cred), name, "required", f"{name} {cred}"))
        for cred in adapter.push_credentials:
            out.append(EnvVar(adapter.var(cred), name, "push",
                              f"{name} {cred} (webhooks; without it {name} is polled only)"))
        for cred in adapter.optional:
            if cred not in adapter.push_extra:
                out.append(EnvVar(adapter.var(cred), name, "optional", f"{name} {cred}"))
        out.append(EnvVar(adapter.var("base_url"), name, "base_url",
                          f"{name} API base URL (default {adapter.module.DEFAULT_BASE_URL})"))
        for suffix, keyword in adapter.options.items():
            out.append(EnvVar(f"{adapter.prefix}_{suffix}", name, "option",
                              f"{name} {keyword.replace('_', ' ')}"))
    return out


def prefixes() -> tuple[str, ...]:
    """Every adapter's environment prefix, with the trailing underscore."""
    return tuple(f"{a.prefix}_" for a in ADAPTERS.values())


__all__ = ["ADAPTERS", "Adapter", "EnvVar", "build", "configured", "credentials", "env_vars",
           "is_configured", "missing", "prefixes", "push_ready"]
