"""chatroom-server: a real-time chat backend, wire-compatible with the Go chat server."""

__version__ = "0.1.0"
