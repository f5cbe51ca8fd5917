"""The package index surface: upload, simple pages (PEP 503/691), dists, and the hot path."""
