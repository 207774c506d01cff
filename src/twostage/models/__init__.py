"""twostage.models"""
