"""``python -m packyard`` runs the program (tests start the server this way)."""

from packyard.entry import main

main()
