"""punmri.cli"""
