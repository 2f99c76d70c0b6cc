"""punmri.data"""
