"""Live delivery inside one process: connections with bounded queues, and the hub."""
