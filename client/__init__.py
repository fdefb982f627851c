"""nixlookup.client: the Python client, CSV washing and the `nixlookup` CLI. Never imports the server."""
