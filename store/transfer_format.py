"""What a namespace archive is called and how big its manifest may be (``store/transfer.py``).

The standard library only: the client's ``packyard import`` reads an archive's manifest
before sending it, and a client install has no blob backend to import.
"""

from __future__ import annotations

FORMAT = "packyard-namespace"
VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""A manifest is read into memory before anything else: bounded, whatever the archive says."""
