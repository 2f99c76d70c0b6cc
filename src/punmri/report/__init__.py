"""punmri.report"""
