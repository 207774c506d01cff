"""twostage.train"""
