"""twostage.evaluate"""
