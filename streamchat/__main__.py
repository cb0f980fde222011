from __future__ import annotations

from streamchat.cli import main

main()
