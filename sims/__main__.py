from sims.cli import entry

entry()
