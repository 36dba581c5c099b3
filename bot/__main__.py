"""`python -m bot` is the `shipmate` command."""

from bot.cli import main

main()
