"""Domain rules: users, rooms, messages. No web framework and no sockets here."""
