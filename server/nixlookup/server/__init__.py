"""nixlookup.server: the lookup core (numbers, index, store, policy) and the gRPC service."""
