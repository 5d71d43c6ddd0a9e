"""The HTTP layer: app assembly, authentication, problem details, health."""
