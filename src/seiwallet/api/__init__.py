"""The HTTP edge: the JSON API under ``/v1``, the wallet app's pages, the dev provider."""
