"""The WebSocket side: the ``/ws`` endpoint and its connections."""
