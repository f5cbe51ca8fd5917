"""packyard's product surface: settings, the HTTP app, the CLI and the task-run client."""

__version__ = "0.1.0"
