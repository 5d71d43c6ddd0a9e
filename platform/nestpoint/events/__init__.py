"""Domain events: written to the outbox in the change's own transaction, relayed after."""
