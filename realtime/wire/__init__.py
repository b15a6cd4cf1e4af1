"""Wire formats: every message schema and how frames are laid out on the socket."""
