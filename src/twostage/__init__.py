"""twostage: two-stage generative model workflow."""
