"""Allow ``python -m mailward``."""

from mailward.cli import main

main()
