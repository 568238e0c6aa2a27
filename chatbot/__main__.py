"""``python -m chatbot`` runs the command-line interface."""

from chatbot.cli import main

main()
