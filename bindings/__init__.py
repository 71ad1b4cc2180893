"""Clients for games and tools: Python here; C/C++, C#/Unity and Godot in the subfolders."""
from .client import Client, EventListener  # noqa: F401
