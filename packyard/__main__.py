"""``python -m packyard`` runs the CLI (tests start the server this way)."""

from packyard.cli import main

main()
