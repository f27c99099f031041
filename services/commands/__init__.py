"""The subcommands of ``ringfence``, one module each.

A module ``services/commands/<name>.py`` defines a :class:`click.Command` named ``command``; it becomes
``ringfence <name>`` (underscores become dashes) without any registration. Keep heavy imports (the API,
Celery, the Kubernetes client) inside the command's function so that ``ringfence --help`` stays fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Concatenate, Final, ParamSpec, TypeVar

import click

from services.common.settings import Settings, SettingsError

_P = ParamSpec("_P")
_R = TypeVar("_R")
_SETTINGS_KEY: Final = "ringfence.settings"


def get_settings(ctx: click.Context | None = None) -> Settings:
    """The settings of this invocation, read from the environment once (on first use)."""
    root = (ctx or click.get_current_context()).find_root()
    settings = root.meta.get(_SETTINGS_KEY)
    if settings is None:
        try:
            settings = Settings.from_env(os.environ)
        except SettingsError as error:
            raise click.UsageError(f"configuration error: {error}") from None
        root.meta[_SETTINGS_KEY] = settings
    if not isinstance(settings, Settings):
        raise TypeError(f"{_SETTINGS_KEY} holds {type(settings).__name__}, not Settings")
    return settings


def pass_settings(function: Callable[Concatenate[Settings, _P], _R]) -> Callable[_P, _R]:
    """Decorate a command callback to receive the :class:`Settings` as its first argument."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return function(get_settings(), *args, **kwargs)

    return wrapper
