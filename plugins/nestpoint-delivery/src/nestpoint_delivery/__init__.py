"""Home delivery for Nestpoint: requests, slots, a next-day cut-off, a fulfilment queue."""
