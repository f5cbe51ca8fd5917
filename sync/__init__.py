"""Git repositories into namespaces (see DESIGN.md, "Sync"); imports only ``store``."""
