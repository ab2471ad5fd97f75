"""HTTP and websocket transport: thin handlers over services and the hub."""
