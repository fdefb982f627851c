"""`python -m nixlookup.server.app`: the same as the `nixlookup-server` command."""

from nixlookup.server.app import main

if __name__ == "__main__":
    raise SystemExit(main())
