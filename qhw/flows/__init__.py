"""End-to-end flows that chain the stages (used by ``qhw demo``)."""
