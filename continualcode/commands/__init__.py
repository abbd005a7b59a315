"""One module per subcommand of `continualcode` (cli.py registers them)."""
