"""`ringfence up`: the whole platform in one supervised process group."""

from services.up.cli import command

__all__ = ["command"]
