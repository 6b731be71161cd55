"""influvision: find registered influencers' faces and brand logos in event photos and video."""

from __future__ import annotations

__version__ = "0.1.0"
