"""Background work: the Dramatiq broker, the in-process worker and the periodic scheduler."""
