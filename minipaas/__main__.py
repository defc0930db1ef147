"""`python -m minipaas` runs the command-line interface."""

from minipaas.cli import main

main()
