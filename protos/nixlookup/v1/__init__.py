"""Generated protobuf and gRPC code for nixlookup.v1 (regenerate with `make proto`)."""
