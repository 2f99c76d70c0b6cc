"""punmri.evaluate"""
