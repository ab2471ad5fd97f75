"""chatroom-server: a real-time chat backend, wire-compatible with the Go chat server."""

import logging

__version__ = "0.1.0"

# A library stays quiet until the application (`serve`) configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
