"""twostage.report"""
