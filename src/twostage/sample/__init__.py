"""twostage.sample"""
