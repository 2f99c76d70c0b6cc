"""punmri.physics"""
