"""``python -m starburst``: the ``starburst`` command, without the script on PATH."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main(prog_name="starburst")
