"""The JSON API under ``/api/v1``: one router per thing it manages."""
