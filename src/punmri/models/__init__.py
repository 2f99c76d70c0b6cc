"""punmri.models"""
