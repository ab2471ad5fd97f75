"""Live delivery inside one process: connections, the hub that routes to them, the relay."""
