"""The browser tests' fixtures (browser_support.py), for the modules that ask for them."""

from .browser_support import browsing, chromium  # noqa: F401 (fixtures, found by name)
