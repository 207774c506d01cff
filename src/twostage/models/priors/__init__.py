"""twostage.models.priors"""
