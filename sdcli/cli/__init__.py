"""The Typer layer: parse arguments, call the core, render results. Nothing else imports typer."""
