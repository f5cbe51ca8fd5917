"""Namespace sources into sdists and wheels (see DESIGN.md, "Builder"); imports only ``store``."""
