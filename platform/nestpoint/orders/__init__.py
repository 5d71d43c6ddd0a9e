"""Orders and refunds from every channel; they drive points and growth."""
