"""The team's shared helpers for flows (a sample project the recipes build and install)."""
