"""The `dtx` commands, a module per group (dtx/cli.py assembles them): each parses options, calls the library, prints."""
