"""``python -m mnistkit`` runs the command line."""

from mnistkit.cli import main

main()
